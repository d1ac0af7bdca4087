package wire

// SplitInline appends the words of an inline line to dst, each as a 4-byte
// big-endian length and the unescaped bytes, following Redis's sdssplitargs.
func SplitInline(dst, line []byte) ([]byte, bool) {
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i >= len(line) {
			return dst, true
		}
		hdr := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		inq, insq := false, false
		for {
			if inq {
				if i >= len(line) {
					return dst, false
				}
				c := line[i]
				if c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]) {
					dst = append(dst, unhex(line[i+2])<<4|unhex(line[i+3]))
					i += 4
					continue
				}
				if c == '\\' && i+1 < len(line) {
					i++
					switch line[i] {
					case 'n':
						c = '\n'
					case 'r':
						c = '\r'
					case 't':
						c = '\t'
					case 'b':
						c = '\b'
					case 'a':
						c = '\a'
					default:
						c = line[i]
					}
					dst = append(dst, c)
					i++
					continue
				}
				if c == '"' {
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return dst, false
					}
					i++
					break
				}
				dst = append(dst, c)
				i++
			} else if insq {
				if i >= len(line) {
					return dst, false
				}
				c := line[i]
				if c == '\\' && i+1 < len(line) && line[i+1] == '\'' {
					dst = append(dst, '\'')
					i += 2
					continue
				}
				if c == '\'' {
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return dst, false
					}
					i++
					break
				}
				dst = append(dst, c)
				i++
			} else {
				// As in sdssplitargs, only these end a word (\v and \f
				// do not), and a quote opens anywhere in a word.
				if i >= len(line) || line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n' {
					break
				}
				c := line[i]
				if c == '"' {
					inq = true
				} else if c == '\'' {
					insq = true
				} else {
					dst = append(dst, c)
				}
				i++
			}
		}
		n := len(dst) - hdr - 4
		dst[hdr], dst[hdr+1], dst[hdr+2], dst[hdr+3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// ParseInt parses a decimal integer as Redis's string2ll does for lengths.
func ParseInt(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	neg := false
	if b[0] == '-' {
		neg, b = true, b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if b[0] == '0' && (len(b) > 1 || neg) {
		return 0, false // string2ll refuses leading zeros and "-0"
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}
