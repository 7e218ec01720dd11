from tortoise import migrations
from tortoise.migrations import operations as ops
from models.event import EventKind
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0008_message_sending')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ContactTag',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('contact', fields.ForeignKeyField('models.Contact', source_field='contact_id', db_constraint=True, to_field='id', related_name='tags', on_delete=OnDelete.CASCADE)),
                ('tag', fields.CharField(db_index=True, max_length=50)),
            ],
            options={'table': 'contact_tag', 'app': 'models', 'unique_together': (('contact', 'tag'),), 'pk_attr': 'id', 'table_description': 'A label on a contact (lower case), for segments.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Product',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(db_index=True, auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='products', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=200)),
                ('code', fields.CharField(max_length=50)),
                ('category', fields.CharField(null=True, max_length=100)),
                ('unit_price_cents', fields.BigIntField()),
                ('currency', fields.CharField(max_length=3)),
                ('active', fields.BooleanField(default=True)),
            ],
            options={'table': 'product', 'app': 'models', 'unique_together': (('organization', 'code'),), 'pk_attr': 'id', 'table_description': 'Something the organization sells. Inactive products stay on the lines that use them.'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='LineItem',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(db_index=True, auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('opportunity', fields.ForeignKeyField('models.Opportunity', source_field='opportunity_id', db_constraint=True, to_field='id', related_name='line_items', on_delete=OnDelete.CASCADE)),
                ('product', fields.ForeignKeyField('models.Product', source_field='product_id', db_constraint=True, to_field='id', related_name='line_items', on_delete=OnDelete.RESTRICT)),
                ('quantity', fields.IntField()),
                ('unit_price_cents', fields.BigIntField()),
                ('discount_basis_points', fields.IntField(default=0)),
                ('total_cents', fields.BigIntField()),
            ],
            options={'table': 'line_item', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A product on an opportunity: quantity x unit price, less a discount.'},
            bases=['TimestampedModel'],
        ),
        ops.AlterField(
            model_name='Event',
            name='kind',
            field=fields.CharEnumField(description='CREATED: CREATED\nUPDATED: UPDATED\nSTAGE_CHANGED: STAGE_CHANGED\nWON: WON\nLOST: LOST\nCONVERTED: CONVERTED\nDELETED: DELETED\nPRIMARY_CONTACT_SET: PRIMARY_CONTACT_SET\nPARTICIPANT_ADDED: PARTICIPANT_ADDED\nPARTICIPANT_REMOVED: PARTICIPANT_REMOVED\nFOLLOWER_ADDED: FOLLOWER_ADDED\nFOLLOWER_REMOVED: FOLLOWER_REMOVED\nCOMMENT_ADDED: COMMENT_ADDED\nACTIVITY_PLANNED: ACTIVITY_PLANNED\nACTIVITY_RESCHEDULED: ACTIVITY_RESCHEDULED\nACTIVITY_COMPLETED: ACTIVITY_COMPLETED\nACTIVITY_CANCELLED: ACTIVITY_CANCELLED\nMESSAGE_SENT: MESSAGE_SENT\nLINE_ITEM_ADDED: LINE_ITEM_ADDED\nLINE_ITEM_CHANGED: LINE_ITEM_CHANGED\nLINE_ITEM_REMOVED: LINE_ITEM_REMOVED', enum_type=EventKind, max_length=30),
        ),
    ]
