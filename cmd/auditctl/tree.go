package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cleveragents/audit"
	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
)

// The commands of the Merkle tree: keygen, checkpoint, prove, and the
// --checkpoint and --verifier flags of verify.

func (a *app) keygenCmd() *cobra.Command {
	var name, signerFile string
	cmd := &cobra.Command{
		Use:   "keygen --name NAME --signer FILE",
		Short: "Make a checkpoint signing key; print its verifier key",
		Long: `keygen makes a new Ed25519 key for signing checkpoints of the log's Merkle
tree (golang.org/x/mod/sumdb/note format). It writes the signer key
(PRIVATE+KEY+NAME+...) to FILE, mode 0600, refusing to overwrite a file, and
prints the verifier key (NAME+hash+base64), which you publish: anyone can
check a checkpoint with it. NAME is the key's name, e.g. a host name.

Exit status: 0 on success; 1 when FILE exists or cannot be written; 2 on a
usage error.`,
		Example: `  auditctl keygen --name audit.example.com --signer /etc/audit/signer.key > verifier.key`,
		Args:    cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command) error {
			if name == "" || signerFile == "" {
				return usageErrorf("keygen needs --name and --signer")
			}
			skey, vkey, err := note.GenerateKey(rand.Reader, name)
			if err != nil {
				return usageErrorf("--name %q: %w", name, err)
			}
			f, err := os.OpenFile(signerFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("--signer: %w", err)
			}
			_, err = fmt.Fprintln(f, skey)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("--signer: %w", err)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), vkey)
			return err
		}),
	}
	cmd.Flags().StringVar(&name, "name", "", "the key's `NAME`, e.g. a host name")
	cmd.Flags().StringVar(&signerFile, "signer", "", "`FILE` to write the signer key to (mode 0600)")
	return cmd
}

func (a *app) checkpointCmd() *cobra.Command {
	var signerFile string
	cmd := &cobra.Command{
		Use:   "checkpoint --signer FILE",
		Short: "Print a signed checkpoint of the log's Merkle tree",
		Long: `checkpoint signs a checkpoint of the log's Merkle tree as it is now (its size
and root hash, as a C2SP checkpoint in a signed note) with the signer key in
FILE, keeps it in the database and prints it. Keep it, or publish it,
somewhere the database's writers cannot rewrite: verify --checkpoint then
proves that the log still holds everything it covered.

Exit status: 0 on success; 1 when signing fails; 2 on a usage error or when
the log cannot be opened.`,
		Example: `  auditctl --db app.db checkpoint --signer /etc/audit/signer.key > checkpoint-$(date +%F)`,
		Args:    cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command) error {
			signer, err := readSigner(signerFile)
			if err != nil {
				return err
			}
			return a.withService(cmd, func(ctx context.Context, svc *audit.AuditService) error {
				c, err := svc.SignCheckpoint(ctx, signer)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(c.Note)
				return err
			})
		}),
	}
	cmd.Flags().StringVar(&signerFile, "signer", "", "`FILE` holding the signer key (from keygen)")
	return cmd
}

func (a *app) proveCmd() *cobra.Command {
	var id int64
	var cpFile string
	cmd := &cobra.Command{
		Use:   "prove --id N --checkpoint FILE",
		Short: "Print the inclusion proof of an entry in a checkpoint's tree",
		Long: `prove prints the proof that entry N is a leaf of the tree of the checkpoint in
FILE: one base64 hash per line, from the leaf up (tlog.RecordProof). With the
entry's Hash, the checkpoint and the verifier key, anyone can check it
without the database (audit.VerifyInclusion, or tlog.CheckRecord with leaf
index N-1 on a log that began under the tree).

Exit status: 0 on success; 1 when the entry is not in the checkpoint's tree;
2 on a usage error or when the log cannot be opened.`,
		Example: `  auditctl --db app.db prove --id 42 --checkpoint checkpoint-2024-05-01`,
		Args:    cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command) error {
			if id < 1 {
				return usageErrorf("--id %d: want an entry ID, 1 or more", id)
			}
			msg, err := readCheckpoint(cpFile)
			if err != nil {
				return err
			}
			c, err := audit.ParseUnverifiedCheckpoint(msg)
			if err != nil {
				return usageErrorf("--checkpoint %s: %w", cpFile, err)
			}
			return a.withService(cmd, func(ctx context.Context, svc *audit.AuditService) error {
				p, err := svc.InclusionProof(ctx, id, c.Size)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				for _, h := range p.Proof {
					if _, err := fmt.Fprintln(out, base64.StdEncoding.EncodeToString(h[:])); err != nil {
						return err
					}
				}
				return nil
			})
		}),
	}
	cmd.Flags().Int64Var(&id, "id", 0, "the entry's `ID`")
	cmd.Flags().StringVar(&cpFile, "checkpoint", "", "`FILE` holding the checkpoint (the last one, if it holds several)")
	return cmd
}

// extendVerify gives verify the --checkpoint and --verifier flags: with
// them, it first checks the log against the checkpoint, then runs as
// before.
func (a *app) extendVerify(cmd *cobra.Command) *cobra.Command {
	var cpFile, verifierKey string
	cmd.Flags().StringVar(&cpFile, "checkpoint", "", "a checkpoint `FILE` to check the log against (needs --verifier)")
	cmd.Flags().StringVar(&verifierKey, "verifier", "", "the verifier `KEY` of the checkpoint's signer, or a file holding it")
	cmd.Long += `

With --checkpoint FILE and --verifier KEY (the key text, or a file holding
it), verify first checks that the checkpoint's signature verifies under KEY
("signature"), that the log's Merkle tree extends the checkpoint's tree
("consistency"), and that every remaining entry is a leaf of it and the
tree's hashes match its leaves ("inclusion"); it names the check that fails
and the ID or tree size where. Then it runs the chain check above.`
	cmd.Example += `
  auditctl --db app.db verify --checkpoint checkpoint-2024-05-01 --verifier verifier.key`
	chain := cmd.RunE
	cmd.RunE = runE(func(c *cobra.Command) error {
		if cpFile == "" && verifierKey == "" {
			return chain(c, nil)
		}
		if cpFile == "" || verifierKey == "" {
			return usageErrorf("--checkpoint and --verifier go together")
		}
		v, err := readVerifier(verifierKey)
		if err != nil {
			return err
		}
		msg, err := readCheckpoint(cpFile)
		if err != nil {
			return err
		}
		err = a.withService(c, func(ctx context.Context, svc *audit.AuditService) error {
			return verifyCheckpoint(ctx, svc, c.OutOrStdout(), msg, v)
		})
		if err != nil {
			return err
		}
		return chain(c, nil)
	})
	return cmd
}

func verifyCheckpoint(ctx context.Context, svc *audit.AuditService, out io.Writer, msg []byte, v note.Verifier) error {
	cp, err := audit.ParseCheckpoint(msg, v)
	if err != nil {
		fmt.Fprintln(out, "CHECKPOINT FAILED: signature")
		return failure(fmt.Errorf("signature: %w", err))
	}
	fmt.Fprintf(out, "signature:   OK (%s, tree size %d)\n", v.Name(), cp.Size)
	rep, err := svc.VerifyCheckpoint(ctx, msg, v)
	switch {
	case errors.Is(err, audit.ErrCheckpoint):
		fmt.Fprintln(out, "CHECKPOINT FAILED: signature")
		return failure(fmt.Errorf("signature: %w", err))
	case errors.Is(err, audit.ErrTampered):
		check := "inclusion"
		if msg := err.Error(); strings.Contains(msg, "checkpoint's root") || strings.Contains(msg, "fewer than") {
			check = "consistency"
		}
		fmt.Fprintln(out, "CHECKPOINT FAILED: "+check)
		return failure(fmt.Errorf("%s: %w", check, err))
	case err != nil:
		return &exitError{code: exitUsage, err: err}
	}
	fmt.Fprintf(out, "consistency: OK (the log's tree extends the checkpoint's %d leaves)\n", cp.Size)
	fmt.Fprintf(out, "inclusion:   OK (%d remaining entries are leaves of the tree)\n", rep.Entries)
	return nil
}

// readSigner reads a signer key file.
func readSigner(path string) (note.Signer, error) {
	if path == "" {
		return nil, usageErrorf("--signer: a signer key file is required (make one with keygen)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("--signer: %w", err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, usageErrorf("--signer %s: not a signer key: %w", path, err)
	}
	return s, nil
}

// readVerifier reads a verifier key given as text or as a file.
func readVerifier(key string) (note.Verifier, error) {
	text := strings.TrimSpace(key)
	if b, err := os.ReadFile(key); err == nil {
		text = strings.TrimSpace(string(b))
	}
	v, err := note.NewVerifier(text)
	if err != nil {
		return nil, usageErrorf("--verifier: %q is neither a verifier key nor a file holding one: %w", key, err)
	}
	return v, nil
}

// readCheckpoint reads a checkpoint file: the last note in it, so that a
// FileSink's file works too.
func readCheckpoint(path string) ([]byte, error) {
	if path == "" {
		return nil, usageErrorf("--checkpoint: a checkpoint file is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("--checkpoint: %w", err)
	}
	notes := audit.SplitCheckpoints(b)
	if len(notes) == 0 {
		return nil, usageErrorf("--checkpoint %s holds no checkpoint", path)
	}
	return notes[len(notes)-1], nil
}
