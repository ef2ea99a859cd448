// Package deploy holds how dlite is deployed: the Kubernetes manifests in kubernetes/ and the
// systemd unit in systemd/, with tests that decode every manifest strictly into the Kubernetes API
// types and check the settings that must agree with each other (the shutdown grace and the time a
// stop is given, the probes and the listen address, the secret references and the Secret), and
// the same for the unit and the repository's Dockerfile. The package has no code of its own.
package deploy
