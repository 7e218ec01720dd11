from tortoise import migrations
from tortoise.migrations import operations as ops
from models.event import EventKind
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [("models", "0017_event_facts")]

    initial = False

    operations = [
        ops.CreateModel(
            name='AccountFollower',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='account_followers', on_delete=OnDelete.CASCADE)),
                ('record', fields.ForeignKeyField('models.Account', source_field='record_id', db_constraint=True, to_field='id', related_name='followers', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='followed_accounts', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'account_follower', 'app': 'models', 'unique_together': (('record', 'user'),), 'indexes': [Index(fields=['organization_id', 'user_id', 'record_id']), Index(fields=['organization_id', 'record_id'])], 'pk_attr': 'id'},
            bases=['TimestampedModel'],
        ),
        ops.CreateModel(
            name='ContactFollower',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='contact_followers', on_delete=OnDelete.CASCADE)),
                ('record', fields.ForeignKeyField('models.Contact', source_field='record_id', db_constraint=True, to_field='id', related_name='followers', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='followed_contacts', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'contact_follower', 'app': 'models', 'unique_together': (('record', 'user'),), 'indexes': [Index(fields=['organization_id', 'user_id', 'record_id']), Index(fields=['organization_id', 'record_id'])], 'pk_attr': 'id'},
            bases=['TimestampedModel'],
        ),
        ops.AlterField(
            model_name='Event',
            name='kind',
            field=fields.CharEnumField(description='CREATED: CREATED\nUPDATED: UPDATED\nSTAGE_CHANGED: STAGE_CHANGED\nWON: WON\nLOST: LOST\nCONVERTED: CONVERTED\nDELETED: DELETED\nPRIMARY_CONTACT_SET: PRIMARY_CONTACT_SET\nPARTICIPANT_ADDED: PARTICIPANT_ADDED\nPARTICIPANT_REMOVED: PARTICIPANT_REMOVED\nPARTICIPANT_UPDATED: PARTICIPANT_UPDATED\nFOLLOWER_ADDED: FOLLOWER_ADDED\nFOLLOWER_REMOVED: FOLLOWER_REMOVED\nCOMMENT_ADDED: COMMENT_ADDED\nACTIVITY_PLANNED: ACTIVITY_PLANNED\nACTIVITY_RESCHEDULED: ACTIVITY_RESCHEDULED\nACTIVITY_COMPLETED: ACTIVITY_COMPLETED\nACTIVITY_CANCELLED: ACTIVITY_CANCELLED\nMESSAGE_SENT: MESSAGE_SENT\nLINE_ITEM_ADDED: LINE_ITEM_ADDED\nLINE_ITEM_CHANGED: LINE_ITEM_CHANGED\nLINE_ITEM_REMOVED: LINE_ITEM_REMOVED\nCAMPAIGN_MESSAGE_SENT: CAMPAIGN_MESSAGE_SENT\nCAMPAIGN_RESPONSE: CAMPAIGN_RESPONSE', enum_type=EventKind, max_length=30),
        ),
        ops.AddField(
            model_name='Lead',
            name='contact_role',
            field=fields.CharField(null=True, max_length=100),
        ),
        ops.AddField(
            model_name='Opportunity',
            name='contact_role',
            field=fields.CharField(null=True, max_length=100),
        ),
        # The owners of existing leads and opportunities follow them, as new ones' owners do (their
        # creators are not known for sure: the owner alone), since the record's creation.
        ops.RunSQL(
            'INSERT INTO "lead_follower" (record_id, user_id, created_at, updated_at)'
            ' SELECT d.id, d.owner_id, d.created_at, d.created_at FROM "lead" AS d'
            ' WHERE NOT EXISTS (SELECT 1 FROM "lead_follower" AS f'
            ' WHERE f.record_id = d.id AND f.user_id = d.owner_id)'
        ),
        ops.RunSQL(
            'INSERT INTO "opportunity_follower" (record_id, user_id, created_at, updated_at)'
            ' SELECT d.id, d.owner_id, d.created_at, d.created_at FROM "opportunity" AS d'
            ' WHERE NOT EXISTS (SELECT 1 FROM "opportunity_follower" AS f'
            ' WHERE f.record_id = d.id AND f.user_id = d.owner_id)'
        ),
    ]
