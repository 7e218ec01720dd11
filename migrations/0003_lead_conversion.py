from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_event_log')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Lead',
            name='converted_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Lead',
            name='converted_opportunity',
            field=fields.ForeignKeyField('models.Opportunity', source_field='converted_opportunity_id', null=True, db_constraint=True, to_field='id', related_name='converted_leads', on_delete=OnDelete.SET_NULL),
        ),
    ]
