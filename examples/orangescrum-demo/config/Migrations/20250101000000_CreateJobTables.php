<?php
declare(strict_types=1);

// The tables the queue worker and the recurring task record their work in.
return static function (PDO $db): void {
    $db->exec('CREATE TABLE processed_jobs (
        job_id varchar(64) PRIMARY KEY,
        kind varchar(100) NOT NULL,
        payload jsonb NOT NULL,
        enqueued_at timestamptz NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT now(),
        worker_pid integer NOT NULL,
        app_version varchar(50) NOT NULL
    )');
    $db->exec('CREATE TABLE recurring_task_runs (
        id bigserial PRIMARY KEY,
        ran_at timestamptz NOT NULL DEFAULT now(),
        app_version varchar(50) NOT NULL,
        hostname varchar(255) NOT NULL
    )');
};
