from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0013_persisted_queries')]

    initial = False

    operations = [
        ops.RemoveIndex(
            model_name='Change',
            name=None,
            fields=['organization_id', 'id'],
        ),
        ops.AddField(
            model_name='Change',
            name='txid',
            field=fields.BigIntField(default=0),
        ),
        ops.AddIndex(
            model_name='Change',
            index=Index(fields=['organization_id', 'txid', 'id']),
        ),
        ops.AddField(
            model_name='PersistedQuery',
            name='allowlisted',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='SyncState',
            name='pruned_txid',
            field=fields.BigIntField(default=0),
        ),
    ]
