from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index


# A campaign's message to a member is found by its contact (resolvers/campaign.py `_record` sets
# each claimed member's message in the statement that claims it).


class Migration(migrations.Migration):
    dependencies = [('models', '0022_webhook_secrets')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Message',
            index=Index(fields=['campaign_id', 'to_contact_id']),
        ),
    ]
