from tortoise import migrations
from tortoise.migrations import operations as ops
from models.contact import LifecycleStage
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0005_messages')]

    initial = False

    operations = [
        ops.CreateModel(
            name='LifecycleChange',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('contact', fields.ForeignKeyField('models.Contact', source_field='contact_id', db_constraint=True, to_field='id', related_name='lifecycle_changes', on_delete=OnDelete.CASCADE)),
                ('from_stage', fields.CharEnumField(description='PROSPECT: PROSPECT\nPOTENTIAL_CLIENT: POTENTIAL_CLIENT\nACTIVE_CLIENT: ACTIVE_CLIENT\nINACTIVE_CLIENT: INACTIVE_CLIENT', enum_type=LifecycleStage, max_length=20)),
                ('to_stage', fields.CharEnumField(description='PROSPECT: PROSPECT\nPOTENTIAL_CLIENT: POTENTIAL_CLIENT\nACTIVE_CLIENT: ACTIVE_CLIENT\nINACTIVE_CLIENT: INACTIVE_CLIENT', enum_type=LifecycleStage, max_length=20)),
                ('cause', fields.CharField(max_length=30)),
                ('reason', fields.TextField(unique=False)),
                ('actor', fields.ForeignKeyField('models.User', source_field='actor_id', null=True, db_constraint=True, to_field='id', related_name='lifecycle_changes', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'lifecycle_change', 'app': 'models', 'pk_attr': 'id', 'table_description': "A contact's move from one lifecycle stage to another, and why."},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Contact',
            name='lifecycle_pinned',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='Organization',
            name='inactive_client_after_days',
            field=fields.IntField(default=180),
        ),
    ]
