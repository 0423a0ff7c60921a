package testenv

import "testing"

func TestMetricValue(t *testing.T) {
	families, err := ParseMetrics(`# HELP requests_total Requests.
# TYPE requests_total counter
requests_total{verb="GET",code="200"} 3
requests_total{verb="GET",code="500"} 1
requests_total{verb="POST",code="200",dry_run=""} 2
# TYPE queue_depth gauge
queue_depth{name="keeper"} 4
# TYPE work_seconds histogram
work_seconds_bucket{name="keeper",le="0.1"} 5
work_seconds_bucket{name="keeper",le="+Inf"} 7
work_seconds_sum{name="keeper"} 0.9
work_seconds_count{name="keeper"} 7
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
		ok     bool
	}{
		{"requests_total", nil, 6, true},
		{"requests_total", map[string]string{"verb": "GET"}, 4, true},
		{"requests_total", map[string]string{"verb": "GET", "code": "500"}, 1, true},
		{"requests_total", map[string]string{"verb": "POST", "dry_run": ""}, 2, true},
		{"requests_total", map[string]string{"verb": "GET", "dry_run": ""}, 4, true}, // a missing label reads as ""
		{"requests_total", map[string]string{"verb": "PUT"}, 0, false},
		{"queue_depth", map[string]string{"name": "keeper"}, 4, true},
		{"work_seconds", map[string]string{"name": "keeper"}, 7, true},
		{"work_seconds", map[string]string{"name": "other"}, 0, false},
		{"absent_total", nil, 0, false},
	} {
		if got, ok := MetricValue(families, c.name, c.labels); got != c.want || ok != c.ok {
			t.Errorf("MetricValue(%s, %v) = %v, %v; want %v, %v", c.name, c.labels, got, ok, c.want, c.ok)
		}
	}
	if _, err := ParseMetrics("requests_total{verb=\"GET\" 3\n"); err == nil {
		t.Error("a malformed line parsed")
	}
}
