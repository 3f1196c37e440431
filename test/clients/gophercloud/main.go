// Command pir-gophercloud drives PIR with gophercloud (the Go SDK Terraform and k-orc use):
// the ordinary image calls a user makes, one JSON line per step on stdout.
//
// Built by `infra/local/services.sh install clients`; run by test/e2e/gophercloud.test.ts.
// Environment: PIR_ENDPOINT, PIR_TOKEN_A (project A, owns the images), PIR_TOKEN_B (project B,
// the image member), PIR_PROJECT_B, PIR_IMAGE_FILE (uploaded and staged), PIR_RUN_ID.
// A step whose prerequisite failed is reported as not ok ("needs ..."), never left out.
package main

import (
	"context"
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imageimport"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/members"
	"github.com/gophercloud/gophercloud/v2/pagination"
)

var steps = []string{
	"connect", "create", "upload", "stage", "import", "wait", "list_property", "list_tag",
	"list_status", "update", "tags", "member_create", "member_accept", "member_list",
	"member_delete", "download", "delete",
}

type flow struct {
	ctx      context.Context
	a, b     *gophercloud.ServiceClient
	projectB string
	file     string
	distro   string
	tag      string
	name     string
	ids      map[string]string // uploaded (PUT file), imported (glance-direct), queued (no data)
	passed   map[string]bool
}

type needsError struct{ missing []string }

func (e needsError) Error() string {
	return fmt.Sprintf("needs %s, which failed", strings.Join(e.missing, ", "))
}

func (f *flow) needs(names ...string) error {
	var missing []string
	for _, n := range names {
		if !f.passed[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return needsError{missing}
	}
	return nil
}

// imageClient is an image v2 client for a fixed endpoint and token: no Keystone here, so the
// endpoint locator answers with the endpoint itself, as a catalog entry would.
func imageClient(endpoint, token string) (*gophercloud.ServiceClient, error) {
	provider := &gophercloud.ProviderClient{HTTPClient: http.Client{Timeout: 5 * time.Minute}}
	provider.SetToken(token)
	provider.EndpointLocator = func(gophercloud.EndpointOpts) (string, error) {
		return gophercloud.NormalizeURL(endpoint), nil
	}
	return openstack.NewImageV2(provider, gophercloud.EndpointOpts{})
}

func describe(err error) string {
	var unexpected gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &unexpected) {
		body := string(unexpected.Body)
		if len(body) > 600 {
			body = body[:600]
		}
		return fmt.Sprintf("HTTP %d from %s %s: %s", unexpected.Actual, unexpected.Method, unexpected.URL, body)
	}
	return err.Error()
}

func (f *flow) listIDs(client *gophercloud.ServiceClient, opts images.ListOpts) ([]string, error) {
	var ids []string
	err := images.List(client, opts).EachPage(f.ctx, func(_ context.Context, page pagination.Page) (bool, error) {
		list, err := images.ExtractImages(page)
		if err != nil {
			return false, err
		}
		for _, image := range list {
			ids = append(ids, image.ID)
		}
		return true, nil
	})
	sort.Strings(ids)
	return ids, err
}

// listWhere lists with raw query parameters: gophercloud's ListOpts has no field for an arbitrary
// property filter such as ?os_distro=, so this builds the query the way ListOpts does.
type rawQuery string

func (q rawQuery) ToImageListQuery() (string, error) { return string(q), nil }

func (f *flow) listRaw(client *gophercloud.ServiceClient, query string) ([]string, error) {
	var ids []string
	err := images.List(client, rawQuery(query)).EachPage(f.ctx, func(_ context.Context, page pagination.Page) (bool, error) {
		list, err := images.ExtractImages(page)
		if err != nil {
			return false, err
		}
		for _, image := range list {
			ids = append(ids, image.ID)
		}
		return true, nil
	})
	sort.Strings(ids)
	return ids, err
}

func (f *flow) get(client *gophercloud.ServiceClient, key string) (*images.Image, error) {
	return images.Get(f.ctx, client, f.ids[key]).Extract()
}

func sorted(values ...string) []string {
	out := slices.Clone(values)
	sort.Strings(out)
	return out
}

// ---- steps ---------------------------------------------------------------------------------

func (f *flow) connect() (string, error) {
	for _, c := range []*gophercloud.ServiceClient{f.a, f.b} {
		if _, err := f.listIDs(c, images.ListOpts{Limit: 1}); err != nil {
			return "", err
		}
	}
	version := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/gophercloud/gophercloud/v2" {
				version = dep.Version
			}
		}
	}
	return "gophercloud " + version + "; both tokens list images", nil
}

func (f *flow) create() (string, error) {
	specs := []struct {
		key  string
		tags []string
	}{{"uploaded", []string{f.tag, "keep"}}, {"imported", nil}, {"queued", nil}}
	var first *images.Image
	for _, spec := range specs {
		image, err := images.Create(f.ctx, f.a, images.CreateOpts{
			Name: f.name + "-" + spec.key, DiskFormat: "raw", ContainerFormat: "bare", Tags: spec.tags,
			Properties: map[string]string{"os_distro": f.distro, "client_flow": "gophercloud"},
		}).Extract()
		if err != nil {
			return "", err
		}
		f.ids[spec.key] = image.ID
		if first == nil {
			first = image
		}
	}
	if first.Status != images.ImageStatusQueued {
		return "", fmt.Errorf("new image status %q, expected queued", first.Status)
	}
	if got := first.Properties["os_distro"]; got != f.distro {
		return "", fmt.Errorf("os_distro not stored: %v", first.Properties)
	}
	if !slices.Equal(sorted(first.Tags...), sorted(f.tag, "keep")) {
		return "", fmt.Errorf("tags %v", first.Tags)
	}
	return fmt.Sprintf("3 images created: %v; owner %s", f.ids, first.Owner), nil
}

func (f *flow) upload() (string, error) {
	if err := f.needs("create"); err != nil {
		return "", err
	}
	file, err := os.Open(f.file)
	if err != nil {
		return "", err
	}
	defer file.Close()
	if err := imagedata.Upload(f.ctx, f.a, f.ids["uploaded"], file).ExtractErr(); err != nil {
		return "", err
	}
	image, err := f.get(f.a, "uploaded")
	if err != nil {
		return "", err
	}
	if image.Status != images.ImageStatusActive {
		return "", fmt.Errorf("status after PUT file: %s", image.Status)
	}
	return fmt.Sprintf("PUT file -> %s, size %d", image.Status, image.SizeBytes), nil
}

func (f *flow) stage() (string, error) {
	if err := f.needs("create"); err != nil {
		return "", err
	}
	file, err := os.Open(f.file)
	if err != nil {
		return "", err
	}
	defer file.Close()
	if err := imagedata.Stage(f.ctx, f.a, f.ids["imported"], file).ExtractErr(); err != nil {
		return "", err
	}
	image, err := f.get(f.a, "imported")
	if err != nil {
		return "", err
	}
	if image.Status != images.ImageStatusUploading {
		return "", fmt.Errorf("status after stage: %s, expected uploading", image.Status)
	}
	return "staged -> " + string(image.Status), nil
}

func (f *flow) importImage() (string, error) {
	if err := f.needs("stage"); err != nil {
		return "", err
	}
	info, err := imageimport.Get(f.ctx, f.a).Extract()
	if err != nil {
		return "", fmt.Errorf("GET /v2/info/import: %w", err)
	}
	if !slices.Contains(info.ImportMethods.Value, string(imageimport.GlanceDirectMethod)) {
		return "", fmt.Errorf("glance-direct not offered: %v", info.ImportMethods.Value)
	}
	err = imageimport.Create(f.ctx, f.a, f.ids["imported"], imageimport.CreateOpts{Name: imageimport.GlanceDirectMethod}).ExtractErr()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("glance-direct import accepted (202); methods offered %v", info.ImportMethods.Value), nil
}

func (f *flow) wait() (string, error) {
	if err := f.needs("import"); err != nil {
		return "", err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		image, err := f.get(f.a, "imported")
		if err != nil {
			return "", err
		}
		switch image.Status {
		case images.ImageStatusActive:
			return "imported image " + image.ID + " is active", nil
		case images.ImageStatusKilled, images.ImageStatusQueued:
			return "", fmt.Errorf("import failed: status %s", image.Status)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("still %s after 2 minutes", image.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (f *flow) listProperty() (string, error) {
	if err := f.needs("create"); err != nil {
		return "", err
	}
	got, err := f.listRaw(f.a, "?os_distro="+f.distro)
	if err != nil {
		return "", err
	}
	want := sorted(f.ids["uploaded"], f.ids["imported"], f.ids["queued"])
	if !slices.Equal(got, want) {
		return "", fmt.Errorf("?os_distro=%s returned %v, expected %v", f.distro, got, want)
	}
	none, err := f.listRaw(f.a, "?os_distro="+f.distro+"-nomatch")
	if err != nil {
		return "", err
	}
	if len(none) != 0 {
		return "", fmt.Errorf("?os_distro=<no such value> returned %v, expected nothing", none)
	}
	return fmt.Sprintf("?os_distro filter returned exactly the %d images", len(got)), nil
}

func (f *flow) listTag() (string, error) {
	if err := f.needs("create"); err != nil {
		return "", err
	}
	got, err := f.listIDs(f.a, images.ListOpts{Tags: []string{f.tag}})
	if err != nil {
		return "", err
	}
	if !slices.Equal(got, []string{f.ids["uploaded"]}) {
		return "", fmt.Errorf("?tag=%s returned %v, expected [%s]", f.tag, got, f.ids["uploaded"])
	}
	both, err := f.listIDs(f.a, images.ListOpts{Tags: []string{f.tag, "keep"}})
	if err != nil {
		return "", err
	}
	if !slices.Equal(both, []string{f.ids["uploaded"]}) {
		return "", fmt.Errorf("?tag=%s&tag=keep returned %v, expected [%s]", f.tag, both, f.ids["uploaded"])
	}
	return fmt.Sprintf("?tag filter returned %v (one tag and two tags)", got), nil
}

func (f *flow) listStatus() (string, error) {
	if err := f.needs("upload", "wait"); err != nil {
		return "", err
	}
	queued, err := f.listRaw(f.a, "?status=queued&os_distro="+f.distro)
	if err != nil {
		return "", err
	}
	if !slices.Equal(queued, []string{f.ids["queued"]}) {
		return "", fmt.Errorf("?status=queued returned %v, expected [%s]", queued, f.ids["queued"])
	}
	active, err := f.listRaw(f.a, "?status=active&os_distro="+f.distro)
	if err != nil {
		return "", err
	}
	if want := sorted(f.ids["uploaded"], f.ids["imported"]); !slices.Equal(active, want) {
		return "", fmt.Errorf("?status=active returned %v, expected %v", active, want)
	}
	// ListOpts.Status goes through gophercloud's own query builder.
	viaOpts, err := f.listIDs(f.a, images.ListOpts{Status: images.ImageStatusQueued, Name: f.name + "-queued"})
	if err != nil {
		return "", err
	}
	if !slices.Equal(viaOpts, []string{f.ids["queued"]}) {
		return "", fmt.Errorf("ListOpts{Status: queued, Name} returned %v", viaOpts)
	}
	return fmt.Sprintf("?status=queued -> %d, ?status=active -> %d", len(queued), len(active)), nil
}

func (f *flow) update() (string, error) {
	if err := f.needs("create"); err != nil {
		return "", err
	}
	_, err := images.Update(f.ctx, f.a, f.ids["uploaded"], images.UpdateOpts{
		images.ReplaceImageName{NewName: f.name + "-renamed"},
		images.ReplaceImageMinRam{NewMinRam: 512},
		images.UpdateImageProperty{Op: images.AddOp, Name: "flow_updated", Value: "yes"},
		images.UpdateImageProperty{Op: images.RemoveOp, Name: "client_flow"},
	}).Extract()
	if err != nil {
		return "", err
	}
	image, err := f.get(f.a, "uploaded")
	if err != nil {
		return "", err
	}
	if image.Name != f.name+"-renamed" || image.MinRAMMegabytes != 512 {
		return "", fmt.Errorf("after PATCH name %q min_ram %d", image.Name, image.MinRAMMegabytes)
	}
	if image.Properties["flow_updated"] != "yes" {
		return "", fmt.Errorf("property not added: %v", image.Properties)
	}
	if _, still := image.Properties["client_flow"]; still {
		return "", fmt.Errorf("property not removed: %v", image.Properties)
	}
	return "PATCH replace name, min_ram; add flow_updated; remove client_flow", nil
}

func (f *flow) tags() (string, error) {
	if err := f.needs("create"); err != nil {
		return "", err
	}
	id := f.ids["uploaded"]
	// gophercloud has no tag call of its own: Terraform replaces the whole list with PATCH.
	_, err := images.Update(f.ctx, f.a, id, images.UpdateOpts{images.ReplaceImageTags{NewTags: []string{f.tag, "keep", "patched"}}}).Extract()
	if err != nil {
		return "", fmt.Errorf("PATCH /tags: %s", describe(err))
	}
	// …and the tag endpoints through the same service client.
	tagURL := f.a.ServiceURL("images", id, "tags", "added-by-go")
	if _, err := f.a.Put(f.ctx, tagURL, nil, nil, &gophercloud.RequestOpts{OkCodes: []int{204}}); err != nil {
		return "", fmt.Errorf("PUT tag: %s", describe(err))
	}
	if _, err := f.a.Delete(f.ctx, f.a.ServiceURL("images", id, "tags", "keep"), &gophercloud.RequestOpts{OkCodes: []int{204}}); err != nil {
		return "", fmt.Errorf("DELETE tag: %s", describe(err))
	}
	image, err := f.get(f.a, "uploaded")
	if err != nil {
		return "", err
	}
	if want := sorted(f.tag, "patched", "added-by-go"); !slices.Equal(sorted(image.Tags...), want) {
		return "", fmt.Errorf("tags %v, expected %v", image.Tags, want)
	}
	return fmt.Sprintf("tags now %v", sorted(image.Tags...)), nil
}

func (f *flow) memberCreate() (string, error) {
	if err := f.needs("create"); err != nil {
		return "", err
	}
	id := f.ids["uploaded"]
	// Only shared images take members (Glance).
	if _, err := images.Update(f.ctx, f.a, id, images.UpdateOpts{images.UpdateVisibility{Visibility: images.ImageVisibilityShared}}).Extract(); err != nil {
		return "", fmt.Errorf("PATCH visibility=shared: %s", describe(err))
	}
	member, err := members.Create(f.ctx, f.a, id, f.projectB).Extract()
	if err != nil {
		return "", err
	}
	if member.Status != "pending" || member.MemberID != f.projectB {
		return "", fmt.Errorf("new member %+v, expected %s pending", member, f.projectB)
	}
	return "member " + f.projectB + " added, status pending", nil
}

func (f *flow) memberAccept() (string, error) {
	if err := f.needs("member_create"); err != nil {
		return "", err
	}
	id := f.ids["uploaded"]
	before, err := f.listIDs(f.b, images.ListOpts{})
	if err != nil {
		return "", err
	}
	if slices.Contains(before, id) {
		return "", errors.New("B lists the image before accepting (Glance lists accepted only)")
	}
	member, err := members.Update(f.ctx, f.b, id, f.projectB, members.UpdateOpts{Status: "accepted"}).Extract()
	if err != nil {
		return "", err
	}
	if member.Status != "accepted" {
		return "", fmt.Errorf("member status %q", member.Status)
	}
	after, err := f.listIDs(f.b, images.ListOpts{})
	if err != nil {
		return "", err
	}
	if !slices.Contains(after, id) {
		return "", errors.New("B does not list the image after accepting")
	}
	return "B accepted and now lists the image", nil
}

func (f *flow) memberList() (string, error) {
	if err := f.needs("member_accept"); err != nil {
		return "", err
	}
	page, err := members.List(f.a, f.ids["uploaded"]).AllPages(f.ctx)
	if err != nil {
		return "", err
	}
	list, err := members.ExtractMembers(page)
	if err != nil {
		return "", err
	}
	if len(list) != 1 || list[0].MemberID != f.projectB || list[0].Status != "accepted" {
		return "", fmt.Errorf("members %+v", list)
	}
	shown, err := members.Get(f.ctx, f.b, f.ids["uploaded"], f.projectB).Extract()
	if err != nil {
		return "", fmt.Errorf("member show as B: %s", describe(err))
	}
	return fmt.Sprintf("members [%s %s]; B shows its own membership (%s)", list[0].MemberID, list[0].Status, shown.Status), nil
}

func (f *flow) memberDelete() (string, error) {
	if err := f.needs("member_create"); err != nil {
		return "", err
	}
	id := f.ids["uploaded"]
	if err := members.Delete(f.ctx, f.a, id, f.projectB).ExtractErr(); err != nil {
		return "", err
	}
	page, err := members.List(f.a, id).AllPages(f.ctx)
	if err != nil {
		return "", err
	}
	if list, _ := members.ExtractMembers(page); len(list) != 0 {
		return "", fmt.Errorf("members after delete %+v", list)
	}
	_, err = images.Get(f.ctx, f.b, id).Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return "", fmt.Errorf("B's GET after the membership was deleted: expected 404, got %v", err)
	}
	return "member removed; B gets 404 for the image", nil
}

func digests(r io.Reader) (string, string, int64, error) {
	m, s := md5.New(), sha512.New()
	n, err := io.CopyBuffer(io.MultiWriter(m, s), r, make([]byte, 1<<20))
	return hex.EncodeToString(m.Sum(nil)), hex.EncodeToString(s.Sum(nil)), n, err
}

func (f *flow) download() (string, error) {
	if err := f.needs("upload"); err != nil {
		return "", err
	}
	file, err := os.Open(f.file)
	if err != nil {
		return "", err
	}
	wantMD5, wantSHA, _, err := digests(file)
	file.Close()
	if err != nil {
		return "", err
	}
	var checked []string
	for _, key := range []string{"uploaded", "imported"} {
		if key == "imported" && !f.passed["wait"] {
			continue
		}
		body, err := imagedata.Download(f.ctx, f.a, f.ids[key]).Extract()
		if err != nil {
			return "", err
		}
		gotMD5, gotSHA, n, err := digests(body)
		body.Close()
		if err != nil {
			return "", err
		}
		if gotMD5 != wantMD5 || gotSHA != wantSHA {
			return "", fmt.Errorf("%s: downloaded md5 %s sha512 %s… differ from the uploaded file's %s %s…", key, gotMD5, gotSHA[:16], wantMD5, wantSHA[:16])
		}
		image, err := f.get(f.a, key)
		if err != nil {
			return "", err
		}
		if image.Checksum != wantMD5 {
			return "", fmt.Errorf("%s: checksum %q, expected the md5 %s", key, image.Checksum, wantMD5)
		}
		if image.Properties["os_hash_value"] != wantSHA {
			return "", fmt.Errorf("%s: os_hash_value %v is not the file's sha512", key, image.Properties["os_hash_value"])
		}
		checked = append(checked, fmt.Sprintf("%s (%d bytes)", key, n))
	}
	if !f.passed["wait"] {
		return "", fmt.Errorf("verified %v; the imported image was not checked because wait failed", checked)
	}
	return "md5 and sha512 match for " + strings.Join(checked, ", "), nil
}

func (f *flow) deleteAll() (string, error) {
	if err := f.needs("create"); err != nil {
		return "", err
	}
	for _, id := range f.ids {
		if err := images.Delete(f.ctx, f.a, id).ExtractErr(); err != nil {
			return "", err
		}
	}
	for _, id := range f.ids {
		_, err := images.Get(f.ctx, f.a, id).Extract()
		if !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			return "", fmt.Errorf("%s after delete: expected 404, got %v", id, err)
		}
	}
	return fmt.Sprintf("%d images deleted; each now 404", len(f.ids)), nil
}

func report(step string, ok bool, detail string) {
	line, _ := json.Marshal(map[string]any{"step": step, "ok": ok, "detail": detail})
	fmt.Println(string(line))
}

func main() {
	endpoint := os.Getenv("PIR_ENDPOINT")
	run := os.Getenv("PIR_RUN_ID")
	if run == "" {
		run = fmt.Sprint(os.Getpid())
	}
	f := &flow{
		ctx: context.Background(), projectB: os.Getenv("PIR_PROJECT_B"), file: os.Getenv("PIR_IMAGE_FILE"),
		distro: "pirdistro-" + run, tag: "pirtag-" + run, name: "go-" + run,
		ids: map[string]string{}, passed: map[string]bool{},
	}
	var err error
	if f.a, err = imageClient(endpoint, os.Getenv("PIR_TOKEN_A")); err == nil {
		f.b, err = imageClient(endpoint, os.Getenv("PIR_TOKEN_B"))
	}
	if err != nil {
		report("connect", false, err.Error())
		os.Exit(2)
	}
	actions := map[string]func() (string, error){
		"connect": f.connect, "create": f.create, "upload": f.upload, "stage": f.stage, "import": f.importImage,
		"wait": f.wait, "list_property": f.listProperty, "list_tag": f.listTag, "list_status": f.listStatus,
		"update": f.update, "tags": f.tags, "member_create": f.memberCreate, "member_accept": f.memberAccept,
		"member_list": f.memberList, "member_delete": f.memberDelete, "download": f.download, "delete": f.deleteAll,
	}
	for _, step := range steps {
		detail, err := actions[step]()
		if err != nil {
			var needs needsError
			if errors.As(err, &needs) {
				report(step, false, err.Error())
			} else {
				report(step, false, describe(err))
			}
			continue
		}
		f.passed[step] = true
		report(step, true, detail)
	}
	// Leave nothing behind even when the delete step failed.
	for _, id := range f.ids {
		_ = images.Delete(f.ctx, f.a, id).ExtractErr()
	}
}
