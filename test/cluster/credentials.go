package cluster

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
)

// Identities the control plane components authenticate as. The scheduler and
// controller manager use their own users so the bootstrap RBAC roles apply
// exactly as in a real cluster.
const (
	AdminUser             = "e2e-admin"
	controllerManagerUser = "system:kube-controller-manager"
	schedulerUser         = "system:kube-scheduler"
)

// tokenUser is one line of the API server's --token-auth-file.
type tokenUser struct {
	token  string
	user   string
	groups []string
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// writeTokenFile writes the static token file: token,user,uid,"group,...".
func writeTokenFile(path string, users []tokenUser) error {
	var sb strings.Builder
	for _, u := range users {
		fmt.Fprintf(&sb, "%s,%s,%s,\"%s\"\n", u.token, u.user, u.user, strings.Join(u.groups, ","))
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		return fmt.Errorf("token file %s: %w", path, err)
	}
	return nil
}

// writeServiceAccountKeys generates the RSA key pair the API server signs
// service account tokens with (private) and verifies them with (public).
func writeServiceAccountKeys(privPath, pubPath string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("service account key: %w", err)
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(privPath, priv, 0o600); err != nil {
		return fmt.Errorf("service account key %s: %w", privPath, err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("service account public key: %w", err)
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		return fmt.Errorf("service account key %s: %w", pubPath, err)
	}
	return nil
}
