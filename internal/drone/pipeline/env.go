package pipeline

import (
	"fmt"
	"maps"
	"strings"
)

// baseEnv is the environment every step of the stage starts from: the DRONE_* variables and the
// build's parameters.
func baseEnv(p *Pipeline, f Facts, ws workspace) map[string]string {
	b, r, st, sys := f.Build, f.Repo, f.Stage, f.System
	env := map[string]string{
		"CI":    "true",
		"DRONE": "true",

		"DRONE_BRANCH":        b.Target,
		"DRONE_SOURCE_BRANCH": b.Source,
		"DRONE_TARGET_BRANCH": b.Target,

		"DRONE_BUILD_NUMBER":   fmt.Sprint(b.Number),
		"DRONE_BUILD_PARENT":   fmt.Sprint(b.Parent),
		"DRONE_BUILD_EVENT":    b.Event,
		"DRONE_BUILD_ACTION":   b.Action,
		"DRONE_BUILD_TRIGGER":  b.Trigger,
		"DRONE_BUILD_CREATED":  fmt.Sprint(b.Created),
		"DRONE_BUILD_STARTED":  fmt.Sprint(b.Started),
		"DRONE_BUILD_FINISHED": fmt.Sprint(b.Finished),
		"DRONE_BUILD_LINK":     buildLink(f),
		"DRONE_BUILD_DEBUG":    fmt.Sprint(b.Debug),

		"DRONE_COMMIT":               b.After,
		"DRONE_COMMIT_SHA":           b.After,
		"DRONE_COMMIT_BEFORE":        b.Before,
		"DRONE_COMMIT_AFTER":         b.After,
		"DRONE_COMMIT_REF":           b.Ref,
		"DRONE_COMMIT_BRANCH":        b.Target,
		"DRONE_COMMIT_LINK":          b.Link,
		"DRONE_COMMIT_MESSAGE":       b.Message,
		"DRONE_COMMIT_AUTHOR":        b.AuthorLogin,
		"DRONE_COMMIT_AUTHOR_NAME":   b.AuthorName,
		"DRONE_COMMIT_AUTHOR_EMAIL":  b.AuthorEmail,
		"DRONE_COMMIT_AUTHOR_AVATAR": b.AuthorAvatar,

		"DRONE_DEPLOY_TO": b.DeployTo,
		"DRONE_CRON":      b.Cron,

		"DRONE_REPO":            r.Slug,
		"DRONE_REPO_OWNER":      r.Namespace,
		"DRONE_REPO_NAMESPACE":  r.Namespace,
		"DRONE_REPO_NAME":       r.Name,
		"DRONE_REPO_LINK":       r.Link,
		"DRONE_REPO_BRANCH":     r.DefaultBranch,
		"DRONE_REPO_PRIVATE":    fmt.Sprint(r.Private),
		"DRONE_REPO_VISIBILITY": r.Visibility,
		"DRONE_REPO_SCM":        r.Scm,
		"DRONE_GIT_HTTP_URL":    r.GitHttpUrl,
		"DRONE_GIT_SSH_URL":     r.GitSshUrl,
		"DRONE_REMOTE_URL":      r.GitHttpUrl,

		"DRONE_STAGE_KIND":       "pipeline",
		"DRONE_STAGE_TYPE":       p.Type,
		"DRONE_STAGE_NAME":       st.Name,
		"DRONE_STAGE_NUMBER":     fmt.Sprint(st.Number),
		"DRONE_STAGE_MACHINE":    st.Machine,
		"DRONE_STAGE_OS":         st.Os,
		"DRONE_STAGE_ARCH":       st.Arch,
		"DRONE_STAGE_VARIANT":    st.Variant,
		"DRONE_STAGE_DEPENDS_ON": strings.Join(st.DependsOn, ","),
		"DRONE_STAGE_STARTED":    fmt.Sprint(st.Started),
		"DRONE_STAGE_FINISHED":   fmt.Sprint(st.Stopped),

		"DRONE_SYSTEM_PROTO":    sys.Proto,
		"DRONE_SYSTEM_HOST":     sys.Host,
		"DRONE_SYSTEM_HOSTNAME": sys.Host,
		"DRONE_SYSTEM_VERSION":  sys.Version,

		"DRONE_WORKSPACE_PATH": ws.path,
	}
	if p.Type == TypeDocker {
		env["DRONE_WORKSPACE"] = ws.full
		env["DRONE_WORKSPACE_BASE"] = ws.base
	}
	if tag, ok := strings.CutPrefix(b.Ref, "refs/tags/"); ok {
		env["DRONE_TAG"] = tag
	}
	if rest, ok := strings.CutPrefix(b.Ref, "refs/pull/"); ok {
		if n, _, ok := strings.Cut(rest, "/"); ok {
			env["DRONE_PULL_REQUEST"] = n
		}
		env["DRONE_PULL_REQUEST_TITLE"] = b.Title
	}
	// Build parameters (custom builds, promotions) come first so the DRONE_* facts cannot be
	// replaced by them.
	out := maps.Clone(b.Params)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, env)
	return out
}

// buildLink is the build's page on the server, as Drone links it.
func buildLink(f Facts) string {
	if f.System.Link == "" {
		return ""
	}
	return fmt.Sprintf("%s/%s/%d", strings.TrimRight(f.System.Link, "/"), f.Repo.Slug, f.Build.Number)
}
