package linstor

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner reads LINSTOR's bulk lists straight from the HTTP body: a JSON
// array of objects of which the sidecar keeps a few fields. encoding/json
// reads every byte twice (once to find the value's end, once to decode it)
// through a state machine, about 100 MB/s here; the resource view at 10,000
// volumes is about 34 MB (the simulator's realistic mode) and, from a real
// LINSTOR, differs in every request, so that was most of a quiet cycle. The
// scanner reads each byte once (several times faster), allocates only the
// strings it keeps, and holds one buffer, never the answer.
//
// It checks the JSON it reads as encoding/json does (structure, strings and
// their escapes, numbers, literals; not UTF-8, which encoding/json replaces
// rather than refuses) and the types of the fields it keeps; object keys
// match exactly (LINSTOR writes them in lower case).
type scanner struct {
	r        io.Reader
	buf      []byte
	pos, end int
	err      error // from r; io.EOF at the end
	depth    int
	// off is the offset in the answer of buf[0], for errors.
	off int64
	// keys[d] holds the key being read at depth d; num a number's text.
	keys [][]byte
	num  []byte
}

// maxDepth bounds nesting; LINSTOR's answers nest about 8 deep.
const maxDepth = 1000

func newScanner(r io.Reader) *scanner {
	return &scanner{r: r, buf: make([]byte, 64<<10)}
}

// more makes a byte available at pos, reading as needed.
func (s *scanner) more() bool {
	if s.pos < s.end {
		return true
	}
	for s.err == nil {
		s.off += int64(s.end)
		s.pos, s.end = 0, 0
		var n int
		n, s.err = s.r.Read(s.buf)
		s.end = n
		if n > 0 {
			return true
		}
	}
	return false
}

func (s *scanner) fail(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", s.off+int64(s.pos), fmt.Sprintf(format, args...))
}

// eof is the error for an answer that ended early (or could not be read).
func (s *scanner) eof() error {
	if s.err == io.EOF {
		return fmt.Errorf("offset %d: %w", s.off+int64(s.pos), io.ErrUnexpectedEOF)
	}
	return s.err
}

// next skips whitespace and returns the next byte without consuming it.
func (s *scanner) next() (byte, error) {
	if s.pos < s.end && s.buf[s.pos] > ' ' {
		return s.buf[s.pos], nil
	}
	return s.nextSlow()
}

func (s *scanner) nextSlow() (byte, error) {
	for s.more() {
		switch c := s.buf[s.pos]; c {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return c, nil
		}
	}
	return 0, s.eof()
}

// expect consumes c, the next byte after whitespace.
func (s *scanner) expect(c byte) error {
	if s.pos < s.end && s.buf[s.pos] == c {
		s.pos++
		return nil
	}
	got, err := s.nextSlow()
	if err != nil {
		return err
	}
	if got != c {
		return s.fail("expected %q, found %q", c, got)
	}
	s.pos++
	return nil
}

// null consumes a null if one comes next.
func (s *scanner) null() (bool, error) {
	c, err := s.next()
	if err != nil || c != 'n' {
		return false, err
	}
	return true, s.literal("null")
}

// literal consumes the keyword lit.
func (s *scanner) literal(lit string) error {
	for i := 0; i < len(lit); i++ {
		if !s.more() {
			return s.eof()
		}
		if s.buf[s.pos] != lit[i] {
			return s.fail("invalid literal, expected %s", lit)
		}
		s.pos++
	}
	return nil
}

// container reads the array or object (open '[' or '{') that comes next,
// or a null: item reads each element (each key and value) in turn.
func (s *scanner) container(open, close byte, item func() error) error {
	if isNull, err := s.null(); isNull || err != nil {
		return err
	}
	if err := s.expect(open); err != nil {
		return err
	}
	if s.depth++; s.depth > maxDepth {
		return s.fail("nested too deep")
	}
	c, err := s.next()
	if err != nil {
		return err
	}
	if c != close {
		for {
			if err := item(); err != nil {
				return err
			}
			if c, err = s.next(); err != nil {
				return err
			}
			if c != ',' {
				break
			}
			s.pos++
		}
		if c != close {
			return s.fail("expected ',' or %q, found %q", close, c)
		}
	}
	s.pos++
	s.depth--
	return nil
}

// array reads [v, ...] (or null), calling elem for each value, which must
// consume it.
func (s *scanner) array(elem func() error) error {
	return s.container('[', ']', elem)
}

// object reads {"k": v, ...} (or null), calling field for each key, which
// must consume the value. The key is valid only during the call.
func (s *scanner) object(field func(key []byte) error) error {
	return s.container('{', '}', func() error {
		for len(s.keys) <= s.depth {
			s.keys = append(s.keys, nil)
		}
		key, err := s.readString(s.keys[s.depth][:0], true)
		s.keys[s.depth] = key
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		return field(key)
	})
}

// readString reads a JSON string, appending its decoded bytes to dst when
// keep is set.
func (s *scanner) readString(dst []byte, keep bool) ([]byte, error) {
	if err := s.expect('"'); err != nil {
		return dst, err
	}
	for {
		if !s.more() {
			return dst, s.eof()
		}
		// The run of plain bytes in the buffer.
		chunk := s.buf[s.pos:s.end]
		i := 0
		for i < len(chunk) && plain[chunk[i]] {
			i++
		}
		if keep {
			dst = append(dst, chunk[:i]...)
		}
		s.pos += i
		if i == len(chunk) {
			continue
		}
		switch c := chunk[i]; {
		case c == '"':
			s.pos++
			return dst, nil
		case c < 0x20:
			return dst, s.fail("control character %#x in a string", c)
		}
		r, err := s.escape()
		if err != nil {
			return dst, err
		}
		if keep {
			dst = utf8.AppendRune(dst, r)
		}
	}
}

// plain marks the bytes a string holds as they are: all but the quote, the
// backslash and control characters.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// escape decodes the escape sequence at pos (a backslash) as encoding/json
// does: a \u surrogate pair is one rune, a lone surrogate U+FFFD.
func (s *scanner) escape() (rune, error) {
	if !s.ensure(2) {
		return 0, s.eof()
	}
	c := s.buf[s.pos+1]
	s.pos += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
		if !s.ensure(4) {
			return 0, s.eof()
		}
		r, ok := hex4(s.buf[s.pos : s.pos+4])
		if !ok {
			return 0, s.fail("invalid \\u escape")
		}
		s.pos += 4
		if !utf16.IsSurrogate(r) {
			return r, nil
		}
		if s.ensure(6) && s.buf[s.pos] == '\\' && s.buf[s.pos+1] == 'u' {
			if r2, ok := hex4(s.buf[s.pos+2 : s.pos+6]); ok {
				if d := utf16.DecodeRune(r, r2); d != unicode.ReplacementChar {
					s.pos += 6
					return d, nil
				}
			}
		}
		return unicode.ReplacementChar, nil
	}
	return 0, s.fail("invalid escape \\%c", c)
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r*16 + rune(c)
	}
	return r, true
}

// ensure makes n bytes available from pos, moving what is left to the front
// of the buffer and reading more; false when the answer ends before.
func (s *scanner) ensure(n int) bool {
	if s.end-s.pos >= n {
		return true
	}
	copy(s.buf, s.buf[s.pos:s.end])
	s.off += int64(s.pos)
	s.end -= s.pos
	s.pos = 0
	for s.end < n && s.err == nil {
		var k int
		k, s.err = s.r.Read(s.buf[s.end:])
		s.end += k
	}
	return s.end >= n
}

// str reads a string (null reads as "").
func (s *scanner) str() (string, error) {
	if isNull, err := s.null(); isNull || err != nil {
		return "", err
	}
	b, err := s.readString(nil, true)
	return string(b), err
}

// internStr reads a string (null reads as ""), stored once per content in m.
func (s *scanner) internStr(m map[string]string) (string, error) {
	if isNull, err := s.null(); isNull || err != nil {
		return "", err
	}
	b, err := s.readString(s.num[:0], true)
	s.num = b
	if err != nil {
		return "", err
	}
	if v, ok := m[string(b)]; ok {
		return v, nil
	}
	v := string(b)
	m[v] = v
	return v, nil
}

// strMap reads an object of strings, keeping the keys keep accepts.
func (s *scanner) strMap(keep func(key []byte) bool) (map[string]string, error) {
	var out map[string]string
	err := s.object(func(key []byte) error {
		if !keep(key) {
			c, err := s.next()
			if err != nil {
				return err
			}
			if c != '"' && c != 'n' {
				return s.fail("expected a string value for %q", key)
			}
			return s.skip()
		}
		k := string(key)
		v, err := s.str()
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
		return err
	})
	return out, err
}

// int32 reads an integer that fits 32 bits.
func (s *scanner) int32() (int32, error) {
	c, err := s.next()
	if err != nil {
		return 0, err
	}
	if c != '-' && (c < '0' || c > '9') {
		return 0, s.fail("expected a number, found %q", c)
	}
	if err := s.number(); err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(string(s.num), 10, 32)
	if err != nil {
		return 0, s.fail("expected a 32-bit integer, found %s", s.num)
	}
	return int32(v), nil
}

// skip reads and checks one value of any kind, keeping nothing. It is
// where the scanner spends its time: most of an answer is skipped.
func (s *scanner) skip() error {
	c, err := s.next()
	if err != nil {
		return err
	}
	switch {
	case c == '{':
		return s.container('{', '}', s.skipMember)
	case c == '[':
		return s.array(s.skip)
	case c == '"':
		_, err := s.readString(nil, false)
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return s.fail("unexpected %q", c)
}

// skipMember reads one key and value of an object skipped whole: the key
// is checked, not kept.
func (s *scanner) skipMember() error {
	if _, err := s.readString(nil, false); err != nil {
		return err
	}
	if err := s.expect(':'); err != nil {
		return err
	}
	return s.skip()
}

// number reads a JSON number, its text into s.num.
func (s *scanner) number() error {
	s.num = s.num[:0]
	for s.more() {
		chunk := s.buf[s.pos:s.end]
		i := 0
		for i < len(chunk) && isNumberByte(chunk[i]) {
			i++
		}
		s.num = append(s.num, chunk[:i]...)
		s.pos += i
		if i < len(chunk) {
			break
		}
	}
	if s.err != nil && s.err != io.EOF {
		return s.err
	}
	if !validNumber(s.num) {
		return s.fail("invalid number %q", s.num)
	}
	return nil
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// validNumber checks JSON's number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(b []byte) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

// done checks that nothing but whitespace follows.
func (s *scanner) done() error {
	if _, err := s.next(); err == nil {
		return s.fail("unexpected data after the list")
	} else if !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	return nil
}
