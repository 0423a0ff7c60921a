package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/pullpass/pullpass/pkg/apis/pullpass/v1alpha1"
	"github.com/pullpass/pullpass/pkg/registryclient"
	"github.com/pullpass/pullpass/pkg/registrytable"
)

// fakeRegistries is an in-memory Registry API: it validates as the CRD does, honours dry runs,
// and can be told to refuse the next real write (failWrite), as an API server may.
type fakeRegistries struct {
	mu        sync.Mutex
	items     map[string]*v1alpha1.Registry
	failWrite error
	version   int
}

var _ registryclient.Interface = (*fakeRegistries)(nil)

var registriesGR = schema.GroupResource{Group: "pullpass.io", Resource: "registries"}

func newFakeRegistries(regs ...*v1alpha1.Registry) *fakeRegistries {
	f := &fakeRegistries{items: map[string]*v1alpha1.Registry{}}
	for _, r := range regs {
		f.items[r.Name] = r.DeepCopy()
	}
	return f
}

func (f *fakeRegistries) Get(_ context.Context, name string, _ metav1.GetOptions) (*v1alpha1.Registry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.Contains(name, "/") {
		return nil, errors.New("invalid resource name") // as client-go says before sending
	}
	r, ok := f.items[name]
	if !ok {
		return nil, apierrors.NewNotFound(registriesGR, name)
	}
	return r.DeepCopy(), nil
}

func (f *fakeRegistries) List(context.Context, metav1.ListOptions) (*v1alpha1.RegistryList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &v1alpha1.RegistryList{}
	for _, r := range f.items {
		out.Items = append(out.Items, *r.DeepCopy())
	}
	sort.Slice(out.Items, func(i, j int) bool { return out.Items[i].Name < out.Items[j].Name })
	return out, nil
}

func (f *fakeRegistries) Watch(context.Context, metav1.ListOptions) (watch.Interface, error) {
	return nil, errors.New("not implemented")
}

func (f *fakeRegistries) write(r *v1alpha1.Registry, dryRun []string, create bool) (*v1alpha1.Registry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := registrytable.Validate(r); err != nil {
		return nil, apierrors.NewInvalid(schema.GroupKind{Group: "pullpass.io", Kind: "Registry"}, r.Name, nil)
	}
	_, exists := f.items[r.Name]
	switch {
	case create && exists:
		return nil, apierrors.NewAlreadyExists(registriesGR, r.Name)
	case !create && !exists:
		return nil, apierrors.NewNotFound(registriesGR, r.Name)
	}
	if len(dryRun) > 0 {
		return r.DeepCopy(), nil
	}
	if f.failWrite != nil {
		err := f.failWrite
		f.failWrite = nil
		return nil, err
	}
	f.version++
	r = r.DeepCopy()
	r.ResourceVersion = fmt.Sprint(f.version)
	f.items[r.Name] = r
	return r.DeepCopy(), nil
}

func (f *fakeRegistries) Create(_ context.Context, r *v1alpha1.Registry, o metav1.CreateOptions) (*v1alpha1.Registry, error) {
	return f.write(r, o.DryRun, true)
}

func (f *fakeRegistries) Update(_ context.Context, r *v1alpha1.Registry, o metav1.UpdateOptions) (*v1alpha1.Registry, error) {
	return f.write(r, o.DryRun, false)
}

func (f *fakeRegistries) UpdateStatus(ctx context.Context, r *v1alpha1.Registry, o metav1.UpdateOptions) (*v1alpha1.Registry, error) {
	return f.Update(ctx, r, o)
}

func (f *fakeRegistries) Patch(context.Context, string, types.PatchType, []byte, metav1.PatchOptions, ...string) (*v1alpha1.Registry, error) {
	return nil, errors.New("not implemented")
}

func (f *fakeRegistries) Delete(_ context.Context, name string, _ metav1.DeleteOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.items[name]; !ok {
		return apierrors.NewNotFound(registriesGR, name)
	}
	delete(f.items, name)
	return nil
}

// fakePrompter answers prompts from a script and records what it was asked; it fails when the
// script runs out, so a test sees any prompt it did not expect.
type fakePrompter struct {
	answers []string
	asked   []string
}

func (p *fakePrompter) next(prompt string) (string, error) {
	p.asked = append(p.asked, prompt)
	if len(p.answers) == 0 {
		return "", fmt.Errorf("unexpected prompt %q", prompt)
	}
	a := p.answers[0]
	p.answers = p.answers[1:]
	return a, nil
}

func (p *fakePrompter) ReadLine(prompt string) (string, error)     { return p.next(prompt) }
func (p *fakePrompter) ReadPassword(prompt string) (string, error) { return p.next(prompt) }
