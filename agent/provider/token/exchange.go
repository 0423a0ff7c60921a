package token

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// SocketPath is the node agent's socket beside the cache: in the agent's own directory (0700),
// so only root on the node reaches it.
func SocketPath(cachePath string) string {
	return filepath.Join(filepath.Dir(cachePath), "agent.sock")
}

// SocketExchanger asks the node agent over its socket: one JSON request, one JSON answer.
type SocketExchanger struct {
	Path string
	// Timeout bounds the whole exchange (the agent's STS and ECR calls; the kubelet gives a
	// plugin a minute).
	Timeout time.Duration
}

// Exchange implements Exchanger.
func (s SocketExchanger) Exchange(req ExchangeRequest) (ExchangeResponse, error) {
	conn, err := net.DialTimeout("unix", s.Path, s.Timeout)
	if err != nil {
		return ExchangeResponse{}, fmt.Errorf("the node agent is not answering on %s: %w", s.Path, err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(s.Timeout))
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return ExchangeResponse{}, fmt.Errorf("asking the node agent: %w", err)
	}
	var resp ExchangeResponse
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return ExchangeResponse{}, fmt.Errorf("reading the node agent's answer: %w", err)
	}
	return resp, nil
}
