from tortoise import migrations
from tortoise.migrations import operations as ops
from models.message import MessageStatus
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0007_forecast')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Message',
            name='status',
            field=fields.CharEnumField(default=MessageStatus.OUTBOX, description='OUTBOX: OUTBOX\nSENDING: SENDING\nSENT: SENT\nFAILED: FAILED', enum_type=MessageStatus, max_length=10),
        ),
    ]
