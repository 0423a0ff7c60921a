package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// Prompter asks the person at the terminal, as docker login does.
type Prompter interface {
	// ReadLine prints prompt and reads a line, echoed.
	ReadLine(prompt string) (string, error)
	// ReadPassword prints prompt and reads a line without echoing it.
	ReadPassword(prompt string) (string, error)
}

// terminalPrompter prompts on a terminal: the prompt goes to out (stderr, so stdout keeps only
// the result), the answer comes from the terminal in.
type terminalPrompter struct {
	in  *os.File
	out io.Writer
}

// newTerminalPrompter returns a Prompter when in is a terminal, or nil.
func newTerminalPrompter(in io.Reader, out io.Writer) Prompter {
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &terminalPrompter{in: f, out: out}
}

func (p *terminalPrompter) ReadLine(prompt string) (string, error) {
	fmt.Fprint(p.out, prompt)
	// One byte at a time: a buffered reader could swallow what is typed after the line.
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		n, err := p.in.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				return strings.TrimSuffix(b.String(), "\r"), nil
			}
			b.WriteByte(buf[0])
		}
		if errors.Is(err, io.EOF) {
			return "", errors.New("the terminal closed before a line was entered")
		}
		if err != nil {
			return "", fmt.Errorf("reading the terminal: %w", err)
		}
	}
}

func (p *terminalPrompter) ReadPassword(prompt string) (string, error) {
	fmt.Fprint(p.out, prompt)
	b, err := term.ReadPassword(int(p.in.Fd()))
	fmt.Fprintln(p.out) // the newline typed was not echoed
	if err != nil {
		return "", fmt.Errorf("reading the password from the terminal: %w", err)
	}
	return string(b), nil
}
