"""A stand-in service for wharf_shared.forks' tests: `main()` acts out its argument."""
