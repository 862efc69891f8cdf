package tapes

import "github.com/gatewayd/gatewayd/uploadbuffer"

// JournalStats are the figures of the library's journal (/metrics).
func (l *Library) JournalStats() uploadbuffer.JournalStats { return l.j.Stats() }
