from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

from webhooks import sealing


# Webhook secrets encrypted at rest (webhooks/sealing.py): the columns widen to hold a
# `fernet:<token>`, then every secret stored in clear is sealed with the first of SECRETS_KEYS
# (running it again re-encrypts them, as `manage.py rotate-secrets` does). Backwards, they are
# opened again, then the columns narrow. Tortoise's own SQL for the widening would rebuild the
# table on SQLite, without its indexes; SQLite does not enforce a VARCHAR's length, so there
# the state changes alone, and PostgreSQL gets its ALTER written here.


class _StateOnlyAlterField(ops.AlterField):
    async def database_forward(self, *args, **kwargs):  # the SQL: _widen
        return None

    async def database_backward(self, *args, **kwargs):  # the SQL: _narrow
        return None


async def _alter_length(schema_editor, length):
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    for column in sealing.COLUMNS:
        await client.execute_script(
            f'ALTER TABLE "webhook_endpoint" ALTER COLUMN "{column}" TYPE VARCHAR({length})'
        )


async def _widen(apps, schema_editor):
    await _alter_length(schema_editor, 300)


async def _narrow(apps, schema_editor):
    await _alter_length(schema_editor, 100)


async def _seal(apps, schema_editor):
    client = schema_editor.client
    if await client.execute_query_dict('SELECT "id" FROM "webhook_endpoint" LIMIT 1'):
        await sealing.reseal_all(client, sealing.for_migration())


async def _open(apps, schema_editor):
    client = schema_editor.client
    if await client.execute_query_dict('SELECT "id" FROM "webhook_endpoint" LIMIT 1'):
        await sealing.unseal_all(client, sealing.for_migration())


class Migration(migrations.Migration):
    dependencies = [('models', '0021_webhooks')]

    initial = False

    operations = [
        _StateOnlyAlterField(
            model_name='WebhookEndpoint',
            name='previous_secret',
            field=fields.CharField(null=True, max_length=300),
        ),
        _StateOnlyAlterField(
            model_name='WebhookEndpoint',
            name='secret',
            field=fields.CharField(max_length=300),
        ),
        ops.RunPython(_widen, _narrow),
        ops.RunPython(_seal, _open),
    ]
