"""The cron scheduler: schedules, catch-up, DAG-folder synchronisation and the scheduling loop."""
