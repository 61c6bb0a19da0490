package store

// SetBackupWritten installs the hook Backup calls right after SQLite wrote
// the copy; nil removes it.
func SetBackupWritten(f func(tmp string)) { backupWritten = f }
