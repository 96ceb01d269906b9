package store

import (
	"strings"
	"testing"
)

func TestSecretsAreStoredAsHashesAndVerified(t *testing.T) {
	secret := NewSecret()
	if !strings.HasPrefix(secret, "gloas-") || len(secret) != len("gloas-")+64 {
		t.Fatalf("secret %q is not 256 bits in GitLab's form", secret)
	}
	hash := HashSecret(secret)
	if strings.Contains(hash, secret[len("gloas-"):]) {
		t.Fatal("the hash contains the secret")
	}
	if !VerifySecret(hash, secret) {
		t.Error("the secret does not verify against its hash")
	}
	for name, wrong := range map[string]string{"another secret": NewSecret(), "empty": "", "the hash itself": hash, "a prefix": secret[:20]} {
		if VerifySecret(hash, wrong) {
			t.Errorf("%s verifies", name)
		}
	}
	if VerifySecret("", secret) || VerifySecret("md5:"+hash[7:], secret) {
		t.Error("a secret verifies against a hash of another form")
	}
	if a, b := NewClientID(), NewClientID(); NewSecret() == secret || a == b {
		t.Error("secrets or ids repeat")
	}
}

func TestTokenKeyIsTheSHA256OfTheValue(t *testing.T) {
	// sha256("abc"), a published test vector.
	if got := TokenKey("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("TokenKey(abc) = %s", got)
	}
}
