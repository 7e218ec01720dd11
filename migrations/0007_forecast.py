from tortoise import migrations
from tortoise.migrations import operations as ops
from models.forecast import PeriodKind
from models.organization import ForecastCategory
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0006_contact_lifecycle')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Quota',
            fields=[
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(db_index=True, auto_now=True, auto_now_add=False)),
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('organization', fields.ForeignKeyField('models.Organization', source_field='organization_id', db_constraint=True, to_field='id', related_name='quotas', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='quotas', on_delete=OnDelete.CASCADE)),
                ('period_kind', fields.CharEnumField(description='MONTH: MONTH\nQUARTER: QUARTER', enum_type=PeriodKind, max_length=10)),
                ('period_start', fields.DateField()),
                ('amount_cents', fields.BigIntField()),
                ('set_by', fields.ForeignKeyField('models.User', source_field='set_by_id', null=True, db_constraint=True, to_field='id', related_name='quotas_set', on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'quota', 'app': 'models', 'unique_together': (('user', 'period_kind', 'period_start'),), 'pk_attr': 'id', 'table_description': "A seller's target of won amount for one month or quarter, in the organization's currency."},
            bases=['TimestampedModel'],
        ),
        ops.AddField(
            model_name='Opportunity',
            name='forecast_category',
            field=fields.CharEnumField(default=ForecastCategory.PIPELINE, description='OMITTED: OMITTED\nPIPELINE: PIPELINE\nBEST_CASE: BEST_CASE\nCOMMIT: COMMIT\nCLOSED: CLOSED', enum_type=ForecastCategory, max_length=20),
        ),
        ops.AddField(
            model_name='Opportunity',
            name='forecast_category_overridden',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='Opportunity',
            name='lost_reason',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='Organization',
            name='currency',
            field=fields.CharField(default='USD', max_length=3),
        ),
        ops.AddField(
            model_name='PipelineStage',
            name='forecast_category',
            field=fields.CharEnumField(default=ForecastCategory.PIPELINE, description='OMITTED: OMITTED\nPIPELINE: PIPELINE\nBEST_CASE: BEST_CASE\nCOMMIT: COMMIT\nCLOSED: CLOSED', enum_type=ForecastCategory, max_length=20),
        ),
        # Stages and opportunities that existed before forecast categories get theirs from their
    # flags and probability, as the default pipeline sets them.
    ops.RunSQL(
        "UPDATE pipeline_stage SET forecast_category = CASE"
        " WHEN is_won THEN 'CLOSED' WHEN is_lost THEN 'OMITTED'"
        " WHEN probability >= 75 THEN 'COMMIT' WHEN probability >= 50 THEN 'BEST_CASE'"
        " ELSE 'PIPELINE' END",
        reverse_sql="",
    ),
    ops.RunSQL(
        "UPDATE opportunity SET forecast_category = (SELECT s.forecast_category"
        " FROM pipeline_stage s WHERE s.id = opportunity.stage_id)",
        reverse_sql="",
    ),
    ]
