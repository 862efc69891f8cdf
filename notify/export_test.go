package notify

// EntryPrefix is where the queue keeps events, for tests that count them.
var EntryPrefix = entryPrefix
