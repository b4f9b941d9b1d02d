package rewrite

// maxNestingDepth is how deeply encoding/json lets arrays and objects nest.
const maxNestingDepth = 10000

// validJSON reports whether data is one JSON value, exactly as json.Valid
// does (FuzzValidJSON holds it to that), in a fraction of its time: every
// negotiate body, and the header and claims of the token inside it, is
// checked, most of it long token strings, which this reads a byte a loop
// rather than a byte a function call.
func validJSON(data []byte) bool {
	var room [32]byte
	open := room[:0] // the '{' or '[' of each container not yet closed
	i := 0
	for {
		// A value starts at i.
		i = skipSpace(data, i)
		if i >= len(data) {
			return false
		}
		switch c := data[i]; c {
		case '{', '[':
			if len(open) >= maxNestingDepth {
				return false
			}
			open = append(open, c)
			if i = skipSpace(data, i+1); i < len(data) && data[i] == c+2 { // '}' is '{'+2, ']' is '['+2
				open = open[:len(open)-1]
				i++
				break // an empty container is a whole value
			}
			if c == '{' {
				if i = validMemberName(data, i); i < 0 {
					return false
				}
			}
			continue
		case '"':
			i = validString(data, i)
		case 't':
			i = validLiteral(data, i, "true")
		case 'f':
			i = validLiteral(data, i, "false")
		case 'n':
			i = validLiteral(data, i, "null")
		default:
			i = validNumber(data, i)
		}
		if i < 0 {
			return false
		}
		// A value ends at i: close the containers it ends, or go on to the
		// next value of the innermost.
	next:
		for {
			i = skipSpace(data, i)
			if len(open) == 0 {
				return i == len(data)
			}
			if i >= len(data) {
				return false
			}
			top := open[len(open)-1]
			switch data[i] {
			case ',':
				i++
				if top == '{' {
					if i = validMemberName(data, skipSpace(data, i)); i < 0 {
						return false
					}
				}
				break next
			case top + 2:
				open = open[:len(open)-1]
				i++
			default:
				return false
			}
		}
	}
}

// validMemberName returns the index past the name and colon of an object
// member at data[i], or -1.
func validMemberName(data []byte, i int) int {
	if i >= len(data) || data[i] != '"' {
		return -1
	}
	if i = validString(data, i); i < 0 {
		return -1
	}
	if i = skipSpace(data, i); i >= len(data) || data[i] != ':' {
		return -1
	}
	return i + 1
}

// validString returns the index past the string at data[i], or -1.
func validString(data []byte, i int) int {
	for i++; i < len(data); {
		switch c := data[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= len(data) {
				return -1
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+5 >= len(data) {
					return -1
				}
				if _, ok := hexValue(data[i+2 : i+6]); !ok {
					return -1
				}
				i += 6
			default:
				return -1
			}
		case c < 0x20:
			return -1
		default:
			i++
		}
	}
	return -1
}

// validLiteral returns the index past lit at data[i], or -1.
func validLiteral(data []byte, i int, lit string) int {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// validNumber returns the index past the number at data[i], or -1.
func validNumber(data []byte, i int) int {
	digits := func(i int) int {
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
		return i
	}
	if data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return -1
	case data[i] == '0':
		i++
	case '1' <= data[i] && data[i] <= '9':
		i = digits(i + 1)
	default:
		return -1
	}
	if i < len(data) && data[i] == '.' {
		if i++; i >= len(data) || data[i] < '0' || data[i] > '9' {
			return -1
		}
		i = digits(i)
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		if i++; i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			return -1
		}
		i = digits(i)
	}
	return i
}
