<?php
declare(strict_types=1);

namespace App;

use RuntimeException;

/**
 * A backing service (PostgreSQL, Redis) is not configured or cannot be reached.
 * The message names the service and the reason, never a password.
 */
final class ServiceUnavailable extends RuntimeException
{
}
