package ci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/dlite-dev/dlite/gen/citasks"
)

// schemas holds the request schemas of the task spec, by component name.
type schemas map[string]*openapi3.Schema

// loadSchemas reads the request schemas the handlers validate task data against.
func loadSchemas() (schemas, error) {
	spec, err := citasks.GetSpec()
	if err != nil {
		return nil, fmt.Errorf("load the CI task spec: %w", err)
	}
	out := make(schemas)
	for _, name := range []string{"VMInitializeData", "VMExecuteData", "VMCleanupData",
		"DockerInitializeData", "DockerExecuteData", "DockerCleanupData"} {
		ref := spec.Components.Schemas[name]
		if ref == nil || ref.Value == nil {
			return nil, fmt.Errorf("load the CI task spec: schema %s is missing", name)
		}
		out[name] = ref.Value
	}
	return out, nil
}

// unknownKeys returns the top-level keys of a task's data that its schema does not name, sorted.
// The CI_DOCKER_* JSON is partly inferred, so the Docker handlers log them: they show what the
// manager really sends.
func (s schemas) unknownKeys(name string, data []byte) []string {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		return nil
	}
	var out []string
	for k := range top {
		if _, known := s[name].Properties[k]; !known {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// decode validates data against the named schema and decodes it into v. Its error says which
// fields are wrong without echoing their values: task data holds secrets.
func (s schemas) decode(name string, data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 || string(bytes.TrimSpace(data)) == "null" {
		data = []byte("{}")
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("task data is not JSON: %w", err)
	}
	if err := s[name].VisitJSON(doc, openapi3.MultiErrors()); err != nil {
		return fmt.Errorf("task data does not match %s: %s", name, describe(err))
	}
	if err := json.Unmarshal(data, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return fmt.Errorf("task data does not match %s: /%s: must fit a %s", name,
				strings.ReplaceAll(typeErr.Field, ".", "/"), typeErr.Type)
		}
		return fmt.Errorf("decode task data as %s: %w", name, err)
	}
	return nil
}

// describe turns a schema validation error into one line naming each bad field.
func describe(err error) string {
	var parts []string
	var visit func(error)
	visit = func(e error) {
		var multi openapi3.MultiError
		var schemaErr *openapi3.SchemaError
		switch {
		case errors.As(e, &multi):
			for _, m := range multi {
				visit(m)
			}
		case errors.As(e, &schemaErr):
			reason := schemaErr.Reason
			if reason == "" {
				reason = fmt.Sprintf("does not match %q", schemaErr.SchemaField)
			}
			if ptr := schemaErr.JSONPointer(); len(ptr) > 0 {
				reason = "/" + strings.Join(ptr, "/") + ": " + reason
			}
			parts = append(parts, reason)
		default:
			parts = append(parts, e.Error())
		}
	}
	visit(err)
	slices.Sort(parts)
	return strings.Join(slices.Compact(parts), "; ")
}
