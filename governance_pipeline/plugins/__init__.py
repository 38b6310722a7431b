"""Built-in plugins: sources, transforms, batch functions and sinks (registered as entry points)."""
