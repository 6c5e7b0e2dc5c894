package resp

import (
	"bytes"

	"github.com/tidwall/redcon"
)

// NextCommand parses the next command at the start of data (after the scanner checked its
// limits): RESP multibulk through redcon, or an inline command. It returns its arguments
// (in argsBuf's array for multibulk), its raw bytes (nil for an inline command) and what
// follows it. An incomplete command returns nil arguments and data unchanged; an empty
// inline line or multibulk ("*0", "*-1") returns nil arguments and the rest after it; a malformed command returns the
// protocol error's text (after "-ERR ").
func NextCommand(data []byte, argsBuf [][]byte) (args [][]byte, raw, left []byte, protoErr string) {
	if data[0] == '*' {
		// "*0", "*-1", "*-5": Redis skips an empty command (the scanner checked the line).
		if i := bytes.IndexByte(data, '\n'); i > 1 && data[i-1] == '\r' {
			if n, ok := ParseLen(data[1 : i-1]); ok && n <= 0 {
				return nil, nil, data[i+1:], ""
			}
		}
		complete, a, _, rest, err := redcon.ReadNextCommand(data, argsBuf)
		if err != nil {
			return nil, nil, data, ProtoErrorText(err)
		}
		if !complete {
			return nil, nil, data, ""
		}
		if len(a) == 0 { // not reached: empty commands are skipped above
			return nil, nil, rest, ""
		}
		return a, data[:len(data)-len(rest)], rest, ""
	}
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		return nil, nil, data, ""
	}
	line := data[:i+1]
	if len(bytes.TrimSpace(line)) == 0 {
		return nil, nil, data[i+1:], ""
	}
	cmd, err := redcon.Parse(line)
	if err != nil {
		return nil, nil, data, ProtoErrorText(err)
	}
	return cmd.Args, nil, data[i+1:], ""
}

// ProtoErrorText is the text after "-ERR " for a parser error.
func ProtoErrorText(err error) string {
	if msg, ok := IsProtoError(err); ok {
		return msg
	}
	return "Protocol error: " + err.Error()
}
