"""Storage drivers: bytes only, behind one small interface (`base.StorageDriver`)."""
