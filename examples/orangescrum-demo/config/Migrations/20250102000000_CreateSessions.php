<?php
declare(strict_types=1);

// Database sessions (SESSION_HANDLER=database), shaped like CakePHP's sessions table.
return static function (PDO $db): void {
    $db->exec('CREATE TABLE sessions (
        id varchar(128) PRIMARY KEY,
        created timestamptz NOT NULL DEFAULT now(),
        modified timestamptz NOT NULL DEFAULT now(),
        data text NOT NULL,
        expires integer NOT NULL
    )');
    $db->exec('CREATE INDEX sessions_expires ON sessions (expires)');
};
