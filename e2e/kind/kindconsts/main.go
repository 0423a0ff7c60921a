// Command kindconsts prints string constants of kind's node image builder
// (sigs.k8s.io/kind/pkg/build/nodeimage): the CNI and storage manifests and the images they
// name, exactly as that kind version writes them into its node images.
//
// Usage: kindconsts DIR NAME: prints the constant NAME declared in the Go files of DIR.
// The constants are concatenations of string literals and other constants, so they are read
// from the source with go/parser rather than imported (they are unexported).
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: kindconsts DIR NAME")
		os.Exit(2)
	}
	v, err := constant(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "kindconsts:", err)
		os.Exit(1)
	}
	fmt.Print(v)
}

func constant(dir, name string) (string, error) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	exprs := map[string]ast.Expr{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || isTest(e.Name()) {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			return "", err
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						exprs[n.Name] = vs.Values[i]
					}
				}
			}
		}
	}
	var eval func(e ast.Expr, depth int) (string, error)
	eval = func(e ast.Expr, depth int) (string, error) {
		if depth > 20 {
			return "", fmt.Errorf("constant %s nests too deep", name)
		}
		switch x := e.(type) {
		case *ast.BasicLit:
			if x.Kind != token.STRING {
				return "", fmt.Errorf("%s: not a string literal", fset.Position(x.Pos()))
			}
			return strconv.Unquote(x.Value)
		case *ast.Ident:
			v, ok := exprs[x.Name]
			if !ok {
				return "", fmt.Errorf("no constant %s in %s", x.Name, dir)
			}
			return eval(v, depth+1)
		case *ast.BinaryExpr:
			if x.Op != token.ADD {
				return "", fmt.Errorf("%s: unsupported operator %s", fset.Position(x.Pos()), x.Op)
			}
			l, err := eval(x.X, depth+1)
			if err != nil {
				return "", err
			}
			r, err := eval(x.Y, depth+1)
			return l + r, err
		case *ast.ParenExpr:
			return eval(x.X, depth+1)
		}
		return "", fmt.Errorf("%s: unsupported expression %T", fset.Position(e.Pos()), e)
	}
	return eval(&ast.Ident{Name: name}, 0)
}

func isTest(name string) bool { return len(name) > 8 && name[len(name)-8:] == "_test.go" }
