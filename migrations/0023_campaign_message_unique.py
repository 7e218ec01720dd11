from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import UniqueConstraint


# A campaign messages each member (contact) once: a launch's claim finds the member's message by
# its contact (resolvers/campaign.py `_record`); the constraint's index serves that lookup.

class Migration(migrations.Migration):
    dependencies = [('models', '0022_webhook_secrets')]

    initial = False

    operations = [
        ops.AddConstraint(
            model_name='Message',
            constraint=UniqueConstraint(fields=('campaign_id', 'to_contact_id'), name=None),
        ),
    ]
