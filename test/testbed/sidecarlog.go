package testbed

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// LogLine is one structured klog line of the sidecar, e.g.
//
//	I0312 10:11:12.123456   4242 reconciler.go:350] "Updated PV affinity" pv="pvc-1" method="recreate" duration="85ms"
type LogLine struct {
	// Time is the line's own timestamp (klog writes local time without a
	// year; the current year is assumed).
	Time     time.Time
	Severity byte
	Msg      string
	Fields   map[string]string
	Raw      string
}

var klogHeader = regexp.MustCompile(`^([IWEF])(\d{2})(\d{2}) (\d{2}:\d{2}:\d{2}\.\d{6})\s+\d+ [^\]]+\] (.*)$`)

// ParseLogLine parses a klog structured line; ok is false for anything else
// (unstructured lines, continuation lines of multi-line values).
func ParseLogLine(raw string) (LogLine, bool) {
	m := klogHeader.FindStringSubmatch(raw)
	if m == nil {
		return LogLine{}, false
	}
	l := LogLine{Severity: m[1][0], Raw: raw, Fields: map[string]string{}}
	now := time.Now()
	if t, err := time.ParseInLocation("2006 0102 15:04:05.000000", fmt.Sprintf("%d %s%s %s", now.Year(), m[2], m[3], m[4]), time.Local); err == nil {
		l.Time = t
	}
	rest := m[5]
	if !strings.HasPrefix(rest, `"`) {
		l.Msg = rest
		return l, true
	}
	q, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return LogLine{}, false
	}
	l.Msg, _ = strconv.Unquote(q)
	rest = strings.TrimSpace(rest[len(q):])
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			break
		}
		key, val := rest[:eq], rest[eq+1:]
		if strings.HasPrefix(val, `"`) {
			q, err := strconv.QuotedPrefix(val)
			if err != nil {
				break
			}
			l.Fields[key], _ = strconv.Unquote(q)
			rest = strings.TrimSpace(val[len(q):])
			continue
		}
		end := strings.IndexByte(val, ' ')
		if end < 0 {
			end = len(val)
		}
		l.Fields[key] = val[:end]
		rest = strings.TrimSpace(val[end:])
	}
	return l, true
}

// LogFollower reads new complete lines of a growing log file.
type LogFollower struct {
	path    string
	offset  int64
	partial []byte
}

// NewLogFollower follows path from its beginning.
func NewLogFollower(path string) *LogFollower { return &LogFollower{path: path} }

// Next returns the structured lines completed since the last call.
func (f *LogFollower) Next() ([]LogLine, error) {
	file, err := os.Open(f.path)
	if err != nil {
		return nil, err
	}
	defer file.Close() //nolint:errcheck // read-only
	if _, err := file.Seek(f.offset, io.SeekStart); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(file)
	if err != nil {
		return nil, err
	}
	f.offset += int64(len(data))
	data = append(f.partial, data...)
	cut := bytes.LastIndexByte(data, '\n')
	if cut < 0 {
		f.partial = data
		return nil, nil
	}
	f.partial = append([]byte(nil), data[cut+1:]...)
	var out []LogLine
	for _, raw := range strings.Split(string(data[:cut]), "\n") {
		if l, ok := ParseLogLine(raw); ok {
			out = append(out, l)
		}
	}
	return out, nil
}

// SidecarLog returns every structured line the sidecar logged so far
// (across restarts), optionally only those with message msg.
func (b *Bed) SidecarLog(msg string) ([]LogLine, error) {
	lines, err := NewLogFollower(b.SidecarLogPath()).Next()
	if err != nil || msg == "" {
		return lines, err
	}
	var out []LogLine
	for _, l := range lines {
		if l.Msg == msg {
			out = append(out, l)
		}
	}
	return out, nil
}
