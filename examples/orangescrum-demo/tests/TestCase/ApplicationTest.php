<?php
declare(strict_types=1);

/*
 * Placeholder test: the builds must leave tests/ out of the embedded app.
 */

namespace App\Test\TestCase;

final class ApplicationTest
{
    public function testPlaceholder(): void
    {
    }
}
