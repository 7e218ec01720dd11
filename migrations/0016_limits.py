from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0015_tenant_indexes')]

    initial = False

    operations = [
        ops.CreateModel(
            name='OrganizationQuery',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization_id', fields.IntField()),
                ('sha256', fields.CharField(max_length=64)),
                ('query', fields.TextField(unique=False)),
                ('used_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'organization_query', 'app': 'models', 'unique_together': (('organization_id', 'sha256'),), 'indexes': [Index(fields=['organization_id', 'used_at'])], 'pk_attr': 'id', 'table_description': 'A query a signed-in member sent with its hash, remembered for their organization only,'},
            bases=['Model'],
        ),
        ops.AlterModelOptions(
            name='PersistedQuery',
            options={'table': 'persisted_query', 'app': 'models', 'pk_attr': 'sha256', 'table_description': 'A registered query (`manage.py persist-queries`), known by its SHA-256 to every'},
        ),
        # Queries remembered automatically were shared by every organization: they are no longer
        # read (each organization remembers its own now), so they go.
        ops.RunSQL('DELETE FROM "persisted_query" WHERE NOT "allowlisted"'),
    ]
