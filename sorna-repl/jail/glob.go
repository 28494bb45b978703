package main

// matchGlob reports whether name matches pattern. In a pattern, `**` matches
// any run of characters including `/`, `*` matches any run of characters
// except `/`, `?` matches one character other than `/`; everything else
// matches itself.
func matchGlob(pattern, name string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			if len(pattern) > 1 && pattern[1] == '*' {
				rest := trimStars(pattern)
				if rest == "" {
					return true
				}
				for i := 0; i <= len(name); i++ {
					if matchGlob(rest, name[i:]) {
						return true
					}
				}
				return false
			}
			rest := pattern[1:]
			for i := 0; i <= len(name); i++ {
				if matchGlob(rest, name[i:]) {
					return true
				}
				if i < len(name) && name[i] == '/' {
					return false
				}
			}
			return false
		case '?':
			if len(name) == 0 || name[0] == '/' {
				return false
			}
		default:
			if len(name) == 0 || name[0] != pattern[0] {
				return false
			}
		}
		pattern, name = pattern[1:], name[1:]
	}
	return len(name) == 0
}

// trimStars drops the leading run of `*` from a pattern.
func trimStars(p string) string {
	for len(p) > 0 && p[0] == '*' {
		p = p[1:]
	}
	return p
}

// matchAny reports whether name matches one of the patterns.
func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if matchGlob(p, name) {
			return true
		}
	}
	return false
}
