package volume

import "github.com/gatewayd/gatewayd/uploadbuffer"

// JournalStats are the figures of the volumes' journal (/metrics).
func (m *Manager) JournalStats() uploadbuffer.JournalStats { return m.j.Stats() }
