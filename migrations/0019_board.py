from tortoise import migrations
from tortoise.migrations import operations as ops
from models.base import LiveIndex


class Migration(migrations.Migration):
    dependencies = [("models", "0018_follow_records")]

    initial = False

    operations = [
        # The opportunities list by probability (the board's order), read by keyset.
        ops.AddIndex(
            model_name="Opportunity",
            index=LiveIndex(
                fields=["organization_id", "probability", "id"], name="opportunity_probability_live"
            ),
        ),
    ]
