package image

import "strings"

// Host returns the registry host of an image as Parse would ("nginx" → docker.io), without
// parsing the rest: a caller that only wants images of certain hosts checks them first, for
// nothing. For an image Parse refuses, the answer means nothing. FuzzHostAgrees checks it
// against Parse.
func Host(s string) string {
	first, _, slash := strings.Cut(s, "/")
	if !slash || !(first == "localhost" || strings.ContainsAny(first, ".:") || strings.ToLower(first) != first) {
		return DockerHub
	}
	if dockerHubAliases[first] {
		return DockerHub
	}
	return first
}
