package atomicfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// WriteJSON replaces path with v as JSON, with mode perm.
func WriteJSON(path string, v any, perm os.FileMode) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return Write(path, data, perm)
}

// ReadJSON reads path, a file of what (for errors), into v. A missing file is an error that
// wraps os.ErrNotExist. Content that is not v's JSON is an error saying where, never quoting it:
// these files hold credentials.
func ReadJSON(path, what string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("%s %s: not valid JSON at byte %d", what, path, se.Offset)
		}
		return fmt.Errorf("%s %s: not a %s", what, path, what)
	}
	return nil
}
