package framework

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// Dashboard is what the suite and hack/tools/promcheck read of the chart's Grafana dashboard.
type Dashboard struct {
	UID    string `json:"uid"`
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// LoadDashboard reads the chart's dashboard (charts/pullpass/files/dashboard.json).
func LoadDashboard() (*Dashboard, error) {
	data, err := os.ReadFile(filepath.Join(RepoRoot(), "charts", "pullpass", "files", "dashboard.json"))
	if err != nil {
		return nil, err
	}
	var d Dashboard
	return &d, json.Unmarshal(data, &d)
}
