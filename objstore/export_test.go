package objstore

// AllCapabilities is the set of every capability LimitCapabilities limits.
const AllCapabilities = uint8(allCapabilities)

// LimitTo returns the view of o that has the capabilities in set, or nil
// when there is none.
func LimitTo(o Full, set uint8) Store {
	if limitedViews[set] == nil {
		return nil
	}
	return limitedViews[set](o)
}
