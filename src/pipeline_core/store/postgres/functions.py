"""The server-side functions behind PostgreSQL's one-round-trip writes.

* ``pipeline_core_move_task(change, stamp, seq)`` — one compare-and-set task move with what a
  transition stamps (``model.apply_task_change``) and its ``task.state_changed`` event
  (``model.task_event_payload``) numbered ``seq``; returns the task instance after.
* ``pipeline_core_move_tasks(changes, stamp, channel)`` — a batch of them: allocates their
  ``seq`` numbers at once, sends the ``NOTIFY``, returns the task instances after.
* ``pipeline_core_apply(writes, stamp, channel)`` — what one engine wake-up commits: run
  creations, run moves (``model.apply_run_change``) and task moves, in order, each with its
  event; returns each task move's try number and error (the rest of every event is known to
  the caller).

A write that finds a run or task not as expected (or a run id taken) raises, and the whole
call is undone: the caller then takes the ordinary path, which says precisely what was wrong.
Called in autocommit, one call is one round trip and one transaction.
"""

MOVE_TASK = """
CREATE FUNCTION pipeline_core_move_task(c jsonb, stamp text, event_seq bigint)
RETURNS task_instances LANGUAGE plpgsql AS $$
DECLARE
  cur task_instances;
  after task_instances;
  new_state text := c->>'new';
  s text;
  e text;
  err text := NULL;
  us bigint := NULL;
BEGIN
  SELECT * INTO cur FROM task_instances AS ti
    WHERE ti.dag_id = c->>'dag_id' AND ti.run_id = c->>'run_id' AND ti.task_id = c->>'task_id'
      AND ti.map_index = COALESCE((c->>'map_index')::integer, -1)
    FOR UPDATE;
  IF NOT FOUND OR cur.state <> c->>'expected' THEN
    RAISE EXCEPTION 'pipeline_core: task not as expected';
  END IF;
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
  IF new_state IN ('failed', 'up_for_retry') THEN
    err := c->>'error';
  END IF;
  IF new_state = 'failed' AND c->>'error' IS NULL THEN
    err := cur.error;
  END IF;
  IF s IS NOT NULL AND e IS NOT NULL THEN
    us := (extract(epoch FROM (e::timestamptz - s::timestamptz)) * 1000000)::bigint;
  END IF;
  UPDATE task_instances AS ti SET state = new_state,
      try_number = COALESCE((c->>'try_number')::integer, cur.try_number),
      max_tries = COALESCE((c->>'max_tries')::integer, cur.max_tries),
      start_date = s, end_date = e,
      duration_ms = floor((us + 500)::numeric / 1000)::bigint, error = err
    WHERE ti.dag_id = cur.dag_id AND ti.run_id = cur.run_id AND ti.task_id = cur.task_id
      AND ti.map_index = cur.map_index
    RETURNING ti.* INTO after;
  INSERT INTO events (seq, type, timestamp, dag_id, run_id, task_id, payload)
  VALUES (event_seq, 'task.state_changed', stamp, after.dag_id, after.run_id, after.task_id,
          json_strip_nulls(json_build_object(
            'dag_id', after.dag_id, 'run_id', after.run_id, 'task_id', after.task_id,
            'map_index', after.map_index, 'try_number', after.try_number,
            'previous_state', cur.state,
            'new_state', new_state, 'timestamp', stamp,
            'error', CASE WHEN new_state IN ('failed', 'up_for_retry') THEN NULLIF(err, '') END,
            'reason', NULLIF(c->>'reason', '')))::text);
  RETURN after;
END $$
"""

MOVE_TASKS = """
CREATE FUNCTION pipeline_core_move_tasks(changes jsonb, stamp text, channel text)
RETURNS TABLE (dag_id text, run_id text, task_id text, state text, try_number integer,
  max_tries integer, pool text, priority_weight integer, start_date text, end_date text,
  error text, map_index integer, last_seq bigint) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  c jsonb;
  after task_instances;
  n integer := jsonb_array_length(changes);
  last bigint;
  nth integer := 0;
BEGIN
  UPDATE event_counter SET seq = seq + n WHERE id = 1 RETURNING seq INTO last;
  FOR c IN SELECT value FROM jsonb_array_elements(changes) LOOP
    nth := nth + 1;
    after := pipeline_core_move_task(c, stamp, last - n + nth);
    dag_id := after.dag_id; run_id := after.run_id; task_id := after.task_id;
    state := after.state; try_number := after.try_number; max_tries := after.max_tries;
    pool := after.pool; priority_weight := after.priority_weight;
    start_date := after.start_date; end_date := after.end_date; error := after.error;
    map_index := after.map_index; last_seq := last;
    RETURN NEXT;
  END LOOP;
  PERFORM pg_notify(channel, last::text);
END $$
"""

APPLY = """
CREATE FUNCTION pipeline_core_apply(writes jsonb, stamp text, channel text)
RETURNS TABLE (try_number integer, error text, last_seq bigint) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  w jsonb;
  after task_instances;
  run dag_runs;
  n integer := jsonb_array_length(writes);
  last bigint;
  nth integer := 0;
  pk bigint;
  new_state text;
  s text;
  e text;
  us bigint;
BEGIN
  UPDATE event_counter SET seq = seq + n WHERE id = 1 RETURNING seq INTO last;
  FOR w IN SELECT value FROM jsonb_array_elements(writes) LOOP
    nth := nth + 1;
    try_number := NULL; error := NULL; last_seq := last;
    IF w->>'kind' = 'task' THEN
      after := pipeline_core_move_task(w, stamp, last - n + nth);
      try_number := after.try_number; error := after.error;
    ELSIF w->>'kind' = 'create' THEN
      IF EXISTS (SELECT 1 FROM dag_runs AS r
                 WHERE r.dag_id = w->>'dag_id' AND r.run_id = w->>'run_id')
         OR (w->>'run_type' = 'scheduled' AND EXISTS (
               SELECT 1 FROM dag_runs AS r WHERE r.dag_id = w->>'dag_id'
               AND r.logical_date = w->>'logical_date' AND r.run_type = 'scheduled')) THEN
        RAISE EXCEPTION 'pipeline_core: run exists';
      END IF;
      INSERT INTO dag_runs (dag_id, run_id, state, run_type, logical_date, conf, note,
                            queued_at, start_date, end_date, duration_ms, priority,
                            dag_version)
      VALUES (w->>'dag_id', w->>'run_id', w->>'state', w->>'run_type', w->>'logical_date',
              w->>'conf', w->>'note', w->>'queued_at', w->>'start_date', w->>'end_date',
              (w->>'duration_ms')::bigint, COALESCE((w->>'priority')::integer, 0),
              w->>'dag_version')
      RETURNING id INTO pk;
      INSERT INTO task_instances (run_pk, ordinal, dag_id, run_id, task_id, state, try_number,
                                  max_tries, pool, priority_weight, start_date, end_date,
                                  error)
      SELECT pk, t.ordinality - 1, w->>'dag_id', w->>'run_id', t.value->>'task_id', 'queued',
             0, (t.value->>'max_tries')::integer, t.value->>'pool',
             (t.value->>'priority_weight')::integer, NULL, NULL, NULL
      FROM jsonb_array_elements(w->'tasks') WITH ORDINALITY AS t(value, ordinality);
      INSERT INTO events (seq, type, timestamp, dag_id, run_id, task_id, payload)
      VALUES (last - n + nth, 'run.state_changed', stamp, w->>'dag_id', w->>'run_id', NULL,
              json_build_object('dag_id', w->>'dag_id', 'run_id', w->>'run_id',
                'previous_state', NULL, 'new_state', w->>'state', 'timestamp', stamp)::text);
    ELSE
      SELECT * INTO run FROM dag_runs AS r
        WHERE r.dag_id = w->>'dag_id' AND r.run_id = w->>'run_id' FOR UPDATE;
      IF NOT FOUND OR run.state <> w->>'expected' THEN
        RAISE EXCEPTION 'pipeline_core: run not as expected';
      END IF;
      new_state := w->>'new';
      s := run.start_date;
      e := run.end_date;
      IF new_state = 'running' THEN
        s := COALESCE(s, stamp); e := NULL;
      ELSIF new_state = 'queued' THEN
        e := NULL;
      ELSIF new_state IN ('success', 'failed', 'cancelled') THEN
        e := stamp;
      END IF;
      us := NULL;
      IF s IS NOT NULL AND e IS NOT NULL THEN
        us := (extract(epoch FROM (e::timestamptz - s::timestamptz)) * 1000000)::bigint;
      END IF;
      UPDATE dag_runs AS r SET state = new_state, start_date = s, end_date = e,
          duration_ms = floor((us + 500)::numeric / 1000)::bigint
        WHERE r.id = run.id;
      INSERT INTO events (seq, type, timestamp, dag_id, run_id, task_id, payload)
      VALUES (last - n + nth, 'run.state_changed', stamp, run.dag_id, run.run_id, NULL,
              json_strip_nulls(json_build_object('dag_id', run.dag_id, 'run_id', run.run_id,
                'previous_state', run.state, 'new_state', new_state, 'timestamp', stamp,
                'reason', NULLIF(w->>'reason', '')))::text);
    END IF;
    RETURN NEXT;
  END LOOP;
  PERFORM pg_notify(channel, last::text);
END $$
"""
