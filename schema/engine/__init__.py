"""The execution engine under the schema: what runs a GraphQL document besides graphql-core.

- `documents`: parsed and validated documents, cached per schema once they pass every rule;
- `cost`: the static cost of an operation (fields, depth, list sizes) checked before it runs;
- `gate`: the doors every operation passes (rate limits, persisted queries, per-organization
  concurrency), for HTTP and websockets alike;
- `plans`: plans that run a whole selection as a few batched SQL statements, falling back to
  graphql-core where a selection cannot be planned;
- `projections`: the SQL those plans emit (JSON projections, LATERAL lookups, per-parent lists).

Record types (schema/*.py) declare their fields with `records`; nothing here knows a record type.
"""
