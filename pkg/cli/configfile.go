package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/docker/cli/cli/config/configfile"

	"github.com/pullpass/pullpass/pkg/dockerconfig"
	"github.com/pullpass/pullpass/pkg/match"
)

// dockerHubConfigKey is where docker keeps Docker Hub's credentials and asks helpers for them.
const dockerHubConfigKey = "https://index.docker.io/v1/"

// fromConfigFile reads the credentials for a registry (a canonical host pattern) from the files
// people have: docker's config.json, podman's and skopeo's auth.json (the same "auths" map, keys
// possibly with a path), or a registry secret's JSON (Koyeb's: "auth", or "username" and
// "password", whose password may be a whole GCR JSON key). When the file names a credential
// helper for the registry (credHelpers, or credsStore for all), the helper is run as docker runs
// it, through docker's own config package. note receives what the user should know (which entry
// was taken), never a credential.
func fromConfigFile(path, host string, note io.Writer) (username, password string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", badInput("--from-docker-config: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return "", "", badInput("--from-docker-config: %s is empty; log in first (docker login, podman login) or give the credentials another way", path)
	}
	// pullpass's parser first: its errors never quote the file, which holds credentials.
	cfg, err := dockerconfig.Parse(data)
	if err != nil {
		return "", "", badInput("--from-docker-config %s: %w", path, err)
	}
	file := configfile.New(path)
	if err := file.LoadFromReader(bytes.NewReader(data)); err != nil {
		return "", "", badInput("--from-docker-config %s: docker's config reader refuses it (an \"auth\" with no username?)", path)
	}
	registryHost, _, _ := strings.Cut(host, "/")
	key := registryHost
	if registryHost == match.DockerHub {
		key = dockerHubConfigKey
	}
	if helper := helperFor(file, registryHost, key); helper != "" {
		ac, err := file.GetAuthConfig(key)
		if err != nil {
			return "", "", badInput("--from-docker-config %s: credential helper docker-credential-%s failed for %s: %v", path, helper, registryHost, err)
		}
		if ac.IdentityToken != "" {
			return "", "", badInput("--from-docker-config %s: docker-credential-%s holds an identity token for %s, which the kubelet cannot use; log in with a username and password or access token", path, helper, registryHost)
		}
		if ac.Username == "" || ac.Password == "" {
			return "", "", badInput("--from-docker-config %s: credential helper docker-credential-%s has no credentials for %s; log in first", path, helper, registryHost)
		}
		fmt.Fprintf(note, "credentials for %s from credential helper docker-credential-%s\n", registryHost, helper)
		return ac.Username, ac.Password, nil
	}
	e, found, ok := entryFor(cfg, host, registryHost)
	if !ok {
		return "", "", badInput("--from-docker-config %s has no entry for %s (it has: %s)", path, host, strings.Join(cfg.Hosts(), ", "))
	}
	if found != host {
		fmt.Fprintf(note, "credentials for %s from the entry %q of %s\n", host, found, path)
	}
	if e.IdentityToken != "" && e.Password == "" {
		return "", "", badInput("--from-docker-config %s: the entry for %s holds an identity token, which the kubelet cannot use; log in with a username and password or access token", path, found)
	}
	if e.Username == "" || e.Password == "" {
		return "", "", badInput("--from-docker-config %s: the entry for %s has no username and password", path, found)
	}
	return e.Username, e.Password, nil
}

// helperFor names the credential helper docker would run for a registry, or "".
func helperFor(file *configfile.ConfigFile, host, key string) string {
	for _, k := range []string{key, host} {
		if h := file.CredentialHelpers[k]; h != "" {
			return h
		}
	}
	return file.CredentialsStore
}

// entryFor finds the entry for a pattern: its own key in any form docker or podman writes it,
// else its host's, else the file's only entry. It returns the entry's canonical key.
func entryFor(cfg *dockerconfig.Config, host, registryHost string) (dockerconfig.AuthEntry, string, bool) {
	for _, h := range []string{host, registryHost} {
		if e, ok := cfg.Lookup(h); ok {
			return e, h, true
		}
	}
	if hosts := cfg.Hosts(); len(hosts) == 1 {
		e, ok := cfg.Lookup(hosts[0])
		return e, hosts[0], ok
	}
	return dockerconfig.AuthEntry{}, "", false
}
