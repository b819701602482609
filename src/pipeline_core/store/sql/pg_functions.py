"""The server-side function behind PostgreSQL's one-round-trip task moves.

``pipeline_core_move_tasks(changes, stamp, channel)`` applies a batch of compare-and-set task
moves in order — each with what a transition stamps (``model.apply_task_change``) and its
``task.state_changed`` event (``model.task_event_payload``) — allocates their ``seq``
numbers at once, sends the ``NOTIFY``, and returns the task instances as they are after.
A task not in its expected state raises, and the whole call is undone: the caller then takes
the ordinary path to say precisely what was wrong. Called in autocommit, one call is one
round trip and one transaction.
"""

MOVE_TASKS = """
CREATE FUNCTION pipeline_core_move_tasks(changes jsonb, stamp text, channel text)
RETURNS TABLE (dag_id text, run_id text, task_id text, state text, try_number integer,
  max_tries integer, pool text, priority_weight integer, start_date text, end_date text,
  error text, last_seq bigint) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  c jsonb;
  cur record;
  n integer := jsonb_array_length(changes);
  last bigint;
  after record;
  nth integer := 0;
  new_state text;
  s text;
  e text;
  err text;
  tn integer;
  mt integer;
  us bigint;
BEGIN
  UPDATE event_counter SET seq = seq + n WHERE id = 1 RETURNING seq INTO last;
  FOR c IN SELECT value FROM jsonb_array_elements(changes) LOOP
    SELECT ti.state, ti.try_number, ti.max_tries, ti.start_date, ti.end_date, ti.error INTO cur
      FROM task_instances AS ti
      WHERE ti.dag_id = c->>'dag_id' AND ti.run_id = c->>'run_id' AND ti.task_id = c->>'task_id'
      FOR UPDATE;
    IF NOT FOUND OR cur.state <> c->>'expected' THEN
      RAISE EXCEPTION 'pipeline_core: not as expected';
    END IF;
    new_state := c->>'new';
    s := cur.start_date;
    e := cur.end_date;
    IF new_state = 'running' THEN
      s := stamp; e := NULL;
    ELSIF new_state = 'queued' THEN
      s := NULL; e := NULL;
    ELSIF new_state IN ('success', 'failed', 'upstream_failed', 'skipped', 'cancelled',
                        'removed', 'up_for_retry') THEN
      e := stamp;
    END IF;
    err := NULL;
    IF new_state IN ('failed', 'up_for_retry') THEN
      err := c->>'error';
    END IF;
    IF new_state = 'failed' AND c->>'error' IS NULL THEN
      err := cur.error;
    END IF;
    tn := COALESCE((c->>'try_number')::integer, cur.try_number);
    mt := COALESCE((c->>'max_tries')::integer, cur.max_tries);
    us := NULL;
    IF s IS NOT NULL AND e IS NOT NULL THEN
      us := (extract(epoch FROM (e::timestamptz - s::timestamptz)) * 1000000)::bigint;
    END IF;
    UPDATE task_instances AS ti SET state = new_state, try_number = tn, max_tries = mt,
        start_date = s, end_date = e,
        duration_ms = floor((us + 500)::numeric / 1000)::bigint, error = err
      WHERE ti.dag_id = c->>'dag_id' AND ti.run_id = c->>'run_id' AND ti.task_id = c->>'task_id'
      RETURNING ti.dag_id, ti.run_id, ti.task_id, ti.state, ti.try_number, ti.max_tries,
        ti.pool, ti.priority_weight, ti.start_date, ti.end_date, ti.error INTO after;
    nth := nth + 1;
    INSERT INTO events AS ev (seq, type, timestamp, dag_id, run_id, task_id, payload)
    VALUES (last - n + nth, 'task.state_changed', stamp, c->>'dag_id', c->>'run_id',
            c->>'task_id', json_strip_nulls(json_build_object(
              'dag_id', c->>'dag_id', 'run_id', c->>'run_id', 'task_id', c->>'task_id',
              'try_number', tn, 'previous_state', cur.state, 'new_state', new_state,
              'timestamp', stamp,
              'error', CASE WHEN new_state IN ('failed', 'up_for_retry') THEN NULLIF(err, '') END,
              'reason', NULLIF(c->>'reason', '')))::text);
    dag_id := after.dag_id; run_id := after.run_id; task_id := after.task_id;
    state := after.state; try_number := after.try_number; max_tries := after.max_tries;
    pool := after.pool; priority_weight := after.priority_weight;
    start_date := after.start_date; end_date := after.end_date; error := after.error;
    last_seq := last;
    RETURN NEXT;
  END LOOP;
  PERFORM pg_notify(channel, last::text);
END $$
"""
