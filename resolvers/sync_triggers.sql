-- The change log's trigger function on PostgreSQL (see resolvers/sync.py). Arguments: the
-- record type; for links, the parent table and the link's other end; for leads and
-- opportunities, their participant and follower tables (tombstoned with the deal).
-- Its triggers are deferred to the commit: the change rows of a transaction are written last,
-- under the organization's log lock, so that an organization's change ids are in commit order.
CREATE OR REPLACE FUNCTION crm_log_change() RETURNS trigger AS $$
DECLARE
  item jsonb;
  org integer;
  operation text;
  tx bigint := pg_current_xact_id()::text::bigint;
BEGIN
  IF TG_OP = 'DELETE' THEN item := to_jsonb(OLD); ELSE item := to_jsonb(NEW); END IF;
  IF TG_ARGV[1] = '' THEN
    org := (item->>'organization_id')::integer;
  ELSE
    EXECUTE format('SELECT organization_id FROM %I WHERE id = $1', TG_ARGV[1])
      INTO org USING (item->>'record_id')::integer;
  END IF;
  IF org IS NULL THEN RETURN NULL; END IF;
  PERFORM pg_advisory_xact_lock({organization_log_lock}, org);
  IF TG_OP = 'DELETE' OR item->>'deleted_at' IS NOT NULL THEN
    operation := 'DELETE';
  ELSE
    operation := 'UPSERT';
  END IF;
  INSERT INTO sync_change (organization_id, record_type, record_id, op, data, changed_at, txid)
  VALUES (
    org, TG_ARGV[0], (item->>'id')::integer, operation,
    CASE WHEN TG_ARGV[1] = '' THEN NULL
      ELSE jsonb_build_object('record_id', item->'record_id', TG_ARGV[2], item->TG_ARGV[2])
    END,
    now(), tx
  );
  IF TG_OP = 'UPDATE' AND TG_ARGV[3] <> '' AND to_jsonb(OLD)->>'deleted_at' IS NULL
     AND item->>'deleted_at' IS NOT NULL THEN
    EXECUTE format(
      'INSERT INTO sync_change (organization_id, record_type, record_id, op, data, changed_at, txid) '
      'SELECT $1, $2, id, %L, jsonb_build_object(%L, record_id, %L, contact_id), now(), $3 '
      'FROM %I WHERE record_id = $4', 'DELETE', 'record_id', 'contact_id', TG_ARGV[3])
      USING org, TG_ARGV[0] || 'Participant', tx, (item->>'id')::integer;
    EXECUTE format(
      'INSERT INTO sync_change (organization_id, record_type, record_id, op, data, changed_at, txid) '
      'SELECT $1, $2, id, %L, jsonb_build_object(%L, record_id, %L, user_id), now(), $3 '
      'FROM %I WHERE record_id = $4', 'DELETE', 'record_id', 'user_id', TG_ARGV[4])
      USING org, TG_ARGV[0] || 'Follower', tx, (item->>'id')::integer;
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql
