// Package cli implements the `pullpass` command, which also runs as the kubectl plugin
// `kubectl pullpass`.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/pullpass/pullpass/pkg/kubeconfig"
	"github.com/pullpass/pullpass/pkg/registryclient"
	"github.com/pullpass/pullpass/pkg/version"
)

// Exit codes. Scripts rely on them (`explain` documents them).
const (
	ExitOK       = 0
	ExitNoMatch  = 1 // explain: no registry serves the image; other commands: the operation failed
	ExitBadInput = 2 // invalid input or usage
)

// exitError carries an exit code with its message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func badInput(format string, a ...any) error {
	return &exitError{code: ExitBadInput, err: fmt.Errorf(format, a...)}
}

// Streams are the command's standard streams.
type Streams struct {
	In          io.Reader
	Out, ErrOut io.Writer
}

// Clients are the API clients a command needs; Main builds them from the kubeconfig on first use.
type Clients struct {
	Kube       kubernetes.Interface
	Registries registryclient.Interface
}

// options hold the global flags.
type options struct {
	kubeconfig string
	context    string
	namespace  string
	streams    Streams
	// clients, when set, are used instead of a kubeconfig (tests).
	clients *Clients
	// prompt, when set, asks instead of the terminal (tests).
	prompt Prompter
}

// prompter returns who to ask for credentials: nil when standard input is not a terminal.
func (o *options) prompter() Prompter {
	if o.prompt != nil {
		return o.prompt
	}
	return newTerminalPrompter(o.streams.In, o.streams.ErrOut)
}

func (o *options) getClients() (*Clients, error) {
	if o.clients != nil {
		return o.clients, nil
	}
	cfg, err := o.restConfig()
	if err != nil {
		return nil, err
	}
	c, err := kubeconfig.ClientsFor(cfg)
	if err != nil {
		return nil, err
	}
	o.clients = &Clients{Kube: c.Kube, Registries: c.Registries}
	return o.clients, nil
}

// restConfig loads the kubeconfig the way kubectl does: --kubeconfig, else $KUBECONFIG, else
// ~/.kube/config, with --context choosing the context.
func (o *options) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.context}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.UserAgent = "pullpass-cli"
	return cfg, nil
}

// Run runs the command line args (without the program name) and returns the exit code.
// program is argv[0]: as "kubectl-pullpass" the help says "kubectl pullpass".
func Run(ctx context.Context, program string, args []string, streams Streams) int {
	return run(ctx, program, args, streams, nil)
}

func run(ctx context.Context, program string, args []string, streams Streams, clients *Clients) int {
	return runWith(ctx, program, args, &options{streams: streams, clients: clients})
}

// runWith runs with options set ahead (tests: clients, a prompter).
func runWith(ctx context.Context, program string, args []string, o *options) int {
	streams := o.streams
	root := newRootCommand(program, o)
	root.SetArgs(args)
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(streams.ErrOut, "error:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if isUsageError(err) {
		return ExitBadInput
	}
	return ExitNoMatch
}

// isUsageError recognises cobra's own flag and argument errors, which it does not type.
func isUsageError(err error) bool {
	msg := err.Error()
	for _, s := range []string{"unknown flag", "unknown shorthand flag", "unknown command", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "required flag"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func newRootCommand(program string, o *options) *cobra.Command {
	root := &cobra.Command{
		Use:           "pullpass",
		Short:         "Manage the registry table that lets pods pull from private registries",
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       version.Get().Line("pullpass"),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	if strings.HasPrefix(filepath.Base(program), "kubectl-") {
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl pullpass"}
	}
	pf := root.PersistentFlags()
	pf.StringVar(&o.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	pf.StringVar(&o.context, "context", "", "the kubeconfig context to use")
	pf.StringVarP(&o.namespace, "pullpass-namespace", "N", "pullpass", "the namespace where pullpass keeps registry source secrets")
	root.AddCommand(newRegistriesCommand(o), newExplainCommand(o), newVersionCommand(o))
	return root
}
