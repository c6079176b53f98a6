//! Pushing one image (blobs, platform manifests, index, tags) to one
//! repository, in the order that keeps every tag pointing at complete content:
//! blobs first (HEAD-skip, cross-repo mount, or upload), then each platform
//! manifest by digest, then the index by digest, then the referrers (SBOMs,
//! provenance) and signatures of those manifests, and the tags last.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use ureq::http::Method;

use super::client::{drain, with_query, Body, Client, RegistryError};
use super::sha256_digest;
use crate::manifest::reference::{validate_digest, validate_repository, validate_tag};

/// A blob to push, streamed from a file (the cache's `blobs/sha256/<hex>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobSource {
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

/// A manifest or index to push, held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestBlob {
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// Everything one push of one image to one repository does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPlan {
    pub repository: String,
    /// Layers and configs of every platform (duplicates are pushed once).
    pub blobs: Vec<BlobSource>,
    /// Platform manifests, pushed by digest after all blobs.
    pub manifests: Vec<ManifestBlob>,
    /// The index, pushed by digest after all manifests.
    pub index: ManifestBlob,
    /// Artifacts attached to the platform manifests, pushed after the index
    /// (their blobs with the image's).
    pub referrers: Vec<super::Referrer>,
    /// Cosign signatures of the platform manifests and the index, stored after
    /// the referrers.
    pub signatures: Vec<super::SignatureLayer>,
    /// Tags moved to the index once everything else is in place.
    pub tags: Vec<String>,
    /// Other repositories of the same registry that may hold these blobs.
    pub mount_from: Vec<String>,
}

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Blobs sent (digests, in plan order).
    pub uploaded: Vec<String>,
    /// Blobs the repository already had.
    pub skipped: Vec<String>,
    /// Blobs mounted from another repository.
    pub mounted: Vec<String>,
    /// Manifests (platform manifests and index) written.
    pub manifests_put: usize,
    /// Manifests the repository already had.
    pub manifests_skipped: usize,
    /// Referrer manifests and fallback indexes written.
    pub referrers_put: usize,
    /// Signatures added.
    pub signatures_put: usize,
    /// Tags written (tags already pointing at the index are left alone).
    pub tags_put: Vec<String>,
}

/// Progress of a push, for progress bars and `-v` output (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    BlobSkipped {
        digest: String,
    },
    BlobMounted {
        digest: String,
        from: String,
    },
    BlobStarted {
        digest: String,
        size: u64,
    },
    /// `sent` of `size` bytes of a chunked upload are on the registry.
    BlobProgress {
        digest: String,
        sent: u64,
        size: u64,
    },
    /// `sent` of `size` bytes have been handed to the connection (not yet
    /// acknowledged): a byte count for a progress bar while one PATCH streams.
    BlobSending {
        digest: String,
        sent: u64,
        size: u64,
    },
    BlobUploaded {
        digest: String,
        size: u64,
    },
    ManifestPut {
        digest: String,
    },
    ManifestSkipped {
        digest: String,
    },
    /// A referrer of `subject` was written (or listed in its fallback tag).
    ReferrerPut {
        digest: String,
        subject: String,
    },
    /// A signature of `subject` was added.
    SignaturePut {
        subject: String,
    },
    TagPut {
        tag: String,
        digest: String,
    },
    TagUnchanged {
        tag: String,
    },
    /// A transient failure; the blob's upload starts over.
    Retrying {
        digest: String,
        attempt: u32,
        error: String,
    },
}

enum BlobOutcome {
    Skipped,
    Mounted,
    Uploaded,
}

/// Whether the manifest or index `bytes` names one of `digests` (its config,
/// a layer, a platform manifest). Digests are 71 bytes of `sha256:<hex>`, so a
/// match in the JSON text is a reference, whatever field holds it.
fn names_any(bytes: &[u8], digests: &[&str]) -> bool {
    digests.iter().any(|d| {
        let d = d.as_bytes();
        !d.is_empty() && bytes.windows(d.len()).any(|w| w == d)
    })
}

/// The order blobs go up in (indexes into `blobs`): the smallest first, alone
/// (it sets up auth, so it should be quick), then the largest first, so the
/// big layers' uploads, the push's critical path, start at once and the small
/// blobs fill in around them.
fn upload_order(blobs: &[&BlobSource]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..blobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(blobs[i].size));
    if let Some(smallest) = order.pop() {
        order.insert(0, smallest);
    }
    order
}

impl Client {
    /// Push `plan`: see the module documentation for the order. Blobs go up
    /// to [`Client::with_parallel_uploads`] at a time; the first failure
    /// stops the push before any manifest or tag is written.
    pub fn push(
        &self,
        plan: &PushPlan,
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> Result<PushReport, RegistryError> {
        let host = &self.registry.host;
        validate_repository(host, &plan.repository)?;
        for from in &plan.mount_from {
            validate_repository(host, from)?;
        }
        for tag in &plan.tags {
            validate_tag(tag)?;
        }
        let referrer_blobs = plan.referrers.iter().flat_map(|r| &r.blobs);
        for b in plan.blobs.iter().chain(referrer_blobs.clone()) {
            validate_digest(&b.digest)?;
        }
        for s in &plan.signatures {
            validate_digest(&s.subject)?;
        }
        let referrer_manifests = plan.referrers.iter().map(|r| &r.manifest);
        for m in plan
            .manifests
            .iter()
            .chain(std::iter::once(&plan.index))
            .chain(referrer_manifests)
        {
            let actual = sha256_digest(&m.bytes);
            if actual != m.digest {
                return Err(RegistryError::DigestMismatch {
                    host: host.clone(),
                    repository: plan.repository.clone(),
                    expected: m.digest.clone(),
                    actual,
                });
            }
        }
        let repo = plan.repository.as_str();
        let mounts: Vec<&str> = plan
            .mount_from
            .iter()
            .map(String::as_str)
            .filter(|f| *f != repo)
            .collect();
        let mut scopes = vec![format!("repository:{repo}:pull,push")];
        scopes.extend(mounts.iter().map(|f| Client::pull_scope(f)));

        // Blobs, each digest once.
        let mut blobs: Vec<&BlobSource> = Vec::new();
        for b in plan.blobs.iter().chain(referrer_blobs) {
            if !blobs.iter().any(|x| x.digest == b.digest) {
                blobs.push(b);
            }
        }
        let outcomes = self.push_blobs(repo, &blobs, &mounts, &scopes, progress)?;
        let mut report = PushReport::default();
        for (b, outcome) in blobs.iter().zip(outcomes) {
            match outcome {
                BlobOutcome::Skipped => report.skipped.push(b.digest.clone()),
                BlobOutcome::Mounted => report.mounted.push(b.digest.clone()),
                BlobOutcome::Uploaded => report.uploaded.push(b.digest.clone()),
            }
        }

        // Manifests, then the index, by digest. A manifest naming a blob this
        // push had to upload cannot be on the registry yet, nor an index naming
        // a manifest it had to write: those are PUT without a HEAD first (a PUT
        // is idempotent; this saves round trips on a first push, a re-push of
        // unchanged content still HEADs and writes nothing).
        let mut written: Vec<&str> = report.uploaded.iter().map(String::as_str).collect();
        for m in plan.manifests.iter().chain(std::iter::once(&plan.index)) {
            let new = names_any(&m.bytes, &written);
            if !new
                && self
                    .head_manifest_scoped(repo, &m.digest, &scopes)?
                    .as_deref()
                    == Some(m.digest.as_str())
            {
                report.manifests_skipped += 1;
                progress(PushEvent::ManifestSkipped {
                    digest: m.digest.clone(),
                });
                continue;
            }
            self.put_manifest(repo, &m.digest, m, &scopes)?;
            written.push(&m.digest);
            report.manifests_put += 1;
            progress(PushEvent::ManifestPut {
                digest: m.digest.clone(),
            });
        }

        // Referrers and signatures: what describes the manifests is there
        // before a tag leads anyone to them.
        // One group per subject: its fallback tag is written once for all.
        let mut subjects: Vec<&str> = plan.referrers.iter().map(|r| r.subject.as_str()).collect();
        subjects.sort_unstable();
        subjects.dedup();
        for subject in subjects {
            let group: Vec<&super::Referrer> = plan
                .referrers
                .iter()
                .filter(|r| r.subject == subject)
                .collect();
            let n = self.push_referrers(repo, subject, &group, &scopes)?;
            if n > 0 {
                report.referrers_put += n;
                for r in group {
                    progress(PushEvent::ReferrerPut {
                        digest: r.manifest.digest.clone(),
                        subject: r.subject.clone(),
                    });
                }
            }
        }
        for s in &plan.signatures {
            if self.push_signature(repo, s, &scopes)? {
                report.signatures_put += 1;
                progress(PushEvent::SignaturePut {
                    subject: s.subject.clone(),
                });
            }
        }

        // Tags last (no tag can point at an index this push had to write).
        let index_new = written.contains(&plan.index.digest.as_str());
        for tag in &plan.tags {
            if !index_new
                && self.head_manifest_scoped(repo, tag, &scopes)?.as_deref()
                    == Some(plan.index.digest.as_str())
            {
                progress(PushEvent::TagUnchanged { tag: tag.clone() });
                continue;
            }
            self.put_manifest(repo, tag, &plan.index, &scopes)?;
            report.tags_put.push(tag.clone());
            progress(PushEvent::TagPut {
                tag: tag.clone(),
                digest: plan.index.digest.clone(),
            });
        }
        Ok(report)
    }

    fn push_blobs(
        &self,
        repo: &str,
        blobs: &[&BlobSource],
        mounts: &[&str],
        scopes: &[String],
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> Result<Vec<BlobOutcome>, RegistryError> {
        let workers = self.parallel.min(blobs.len()).max(1);
        let order = upload_order(blobs);
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Mutex<Vec<Option<Result<BlobOutcome, RegistryError>>>> =
            Mutex::new((0..blobs.len()).map(|_| None).collect());
        let work = || loop {
            let n = next.fetch_add(1, Ordering::SeqCst);
            if n >= blobs.len() || failed.load(Ordering::SeqCst) {
                break;
            }
            let i = order[n];
            let r = self.push_blob(repo, blobs[i], mounts, scopes, progress);
            if r.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            results
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)[i] = Some(r);
        };
        if workers == 1 {
            work();
        } else {
            // The first blob alone: its 401 sets up auth (one token fetch, not one per worker).
            let first = self.push_blob(repo, blobs[order[0]], mounts, scopes, progress);
            let first_failed = first.is_err();
            results
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)[order[0]] = Some(first);
            next.store(1, Ordering::SeqCst);
            failed.store(first_failed, Ordering::SeqCst);
            std::thread::scope(|s| {
                for _ in 0..workers {
                    s.spawn(work);
                }
            });
        }
        let results = results
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::with_capacity(blobs.len());
        // The first error in plan order, not a "cancelled" one.
        let mut cancelled = false;
        for r in results {
            match r {
                Some(Ok(o)) => out.push(o),
                Some(Err(e)) => return Err(e),
                None => cancelled = true,
            }
        }
        if cancelled {
            return Err(RegistryError::Cancelled {
                host: self.registry.host.clone(),
                repository: repo.to_owned(),
            });
        }
        Ok(out)
    }

    /// One blob, starting over (HEAD first) after a transient failure.
    fn push_blob(
        &self,
        repo: &str,
        blob: &BlobSource,
        mounts: &[&str],
        scopes: &[String],
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> Result<BlobOutcome, RegistryError> {
        // A blob with no local file may still be skipped (HEAD) or mounted; its
        // upload fails naming the file.
        let actual = match std::fs::metadata(&blob.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => blob.size,
            Err(source) => {
                return Err(RegistryError::ReadBlob {
                    digest: blob.digest.clone(),
                    path: blob.path.clone(),
                    source,
                })
            }
        };
        if actual != blob.size {
            return Err(RegistryError::BlobSize {
                host: self.registry.host.clone(),
                repository: repo.to_owned(),
                digest: blob.digest.clone(),
                path: blob.path.clone(),
                expected: blob.size,
                actual,
            });
        }
        self.retry.run(
            |attempt| {
                let r = self.push_blob_once(repo, blob, mounts, scopes, progress);
                if let Err(e) = &r {
                    if e.is_transient() && attempt < self.retry.max_attempts {
                        progress(PushEvent::Retrying {
                            digest: blob.digest.clone(),
                            attempt,
                            error: e.to_string(),
                        });
                    }
                }
                r
            },
            RegistryError::verdict,
        )
    }

    fn push_blob_once(
        &self,
        repo: &str,
        blob: &BlobSource,
        mounts: &[&str],
        scopes: &[String],
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> Result<BlobOutcome, RegistryError> {
        let digest = blob.digest.as_str();
        // 1. Already there?
        if self.head_blob_once(repo, digest, scopes)? {
            progress(PushEvent::BlobSkipped {
                digest: digest.to_owned(),
            });
            return Ok(BlobOutcome::Skipped);
        }

        // 2. Mount from a sibling repository; a refused mount opens an upload.
        let mut session: Option<String> = None;
        for (i, from) in mounts.iter().enumerate() {
            let path = format!(
                "/v2/{repo}/blobs/uploads/?mount={}&from={}",
                super::client::encode_query_value(digest),
                super::client::encode_query_value(from)
            );
            let req = self.request(Method::POST, &path, repo, scopes);
            let response = self.attempt(&req)?;
            match response.status().as_u16() {
                201 => {
                    drain(response);
                    progress(PushEvent::BlobMounted {
                        digest: digest.to_owned(),
                        from: (*from).to_owned(),
                    });
                    return Ok(BlobOutcome::Mounted);
                }
                202 => {
                    let location = self.location(&response, repo, digest)?;
                    drain(response);
                    if i + 1 == mounts.len() {
                        session = Some(location);
                    } else {
                        self.cancel_upload(&location, repo, scopes);
                    }
                }
                _ => return Err(self.status_error(&req, response)),
            }
        }

        // 3. Upload.
        progress(PushEvent::BlobStarted {
            digest: digest.to_owned(),
            size: blob.size,
        });
        let mut location = match session {
            Some(l) => l,
            None => self.open_upload(repo, digest, scopes)?,
        };
        let check = super::stream_check::StreamCheck::shared(digest, blob.size, blob.path.clone());
        let corrupt = |e: RegistryError| match check.mismatch() {
            Some(found) => RegistryError::LocalBlobCorrupt {
                digest: digest.to_owned(),
                path: check.path().to_owned(),
                found,
            },
            None => e,
        };
        let octet = ("Content-Type", "application/octet-stream".to_owned());
        let sending = |sent: u64| {
            progress(PushEvent::BlobSending {
                digest: digest.to_owned(),
                sent,
                size: blob.size,
            })
        };
        if blob.size <= self.monolithic_max {
            let mut req = self.request(
                Method::PUT,
                &with_query(&location, "digest", digest),
                repo,
                scopes,
            );
            req.headers.push(octet);
            req.body = Body::File {
                path: &blob.path,
                digest,
                offset: 0,
                len: blob.size,
                check: Some(&*check),
                sent: Some(&sending),
            };
            return self.finish_upload(&req, blob, progress).map_err(corrupt);
        }
        let mut offset = 0;
        while offset < blob.size {
            let len = self.chunk_size.min(blob.size - offset);
            let mut req = self.request(Method::PATCH, &location, repo, scopes);
            req.headers.push(octet.clone());
            if len < blob.size {
                // A chunk. The whole blob in one PATCH is a streamed upload,
                // which the distribution spec sends without a range.
                req.headers
                    .push(("Content-Range", format!("{offset}-{}", offset + len - 1)));
            }
            req.body = Body::File {
                path: &blob.path,
                digest,
                offset,
                len,
                check: Some(&*check),
                sent: Some(&sending),
            };
            let response = self.attempt(&req).map_err(corrupt)?;
            if response.status().as_u16() != 202 {
                return Err(self.status_error(&req, response));
            }
            location = self.location(&response, repo, digest)?;
            drain(response);
            offset += len;
            progress(PushEvent::BlobProgress {
                digest: digest.to_owned(),
                sent: offset,
                size: blob.size,
            });
        }
        let req = self.request(
            Method::PUT,
            &with_query(&location, "digest", digest),
            repo,
            scopes,
        );
        self.finish_upload(&req, blob, progress)
    }

    fn finish_upload(
        &self,
        req: &super::client::Request<'_>,
        blob: &BlobSource,
        progress: &(dyn Fn(PushEvent) + Sync),
    ) -> Result<BlobOutcome, RegistryError> {
        let response = self.attempt(req)?;
        if response.status().as_u16() != 201 {
            return Err(self.status_error(req, response));
        }
        let returned = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        drain(response);
        if let Some(actual) = returned.filter(|d| *d != blob.digest) {
            return Err(RegistryError::DigestMismatch {
                host: self.registry.host.clone(),
                repository: req.repository.to_owned(),
                expected: blob.digest.clone(),
                actual,
            });
        }
        progress(PushEvent::BlobUploaded {
            digest: blob.digest.clone(),
            size: blob.size,
        });
        Ok(BlobOutcome::Uploaded)
    }

    /// Opens an upload session for `digest` (one POST, no retry of its own):
    /// the URL to send its bytes to.
    pub(super) fn open_upload(
        &self,
        repo: &str,
        digest: &str,
        scopes: &[String],
    ) -> Result<String, RegistryError> {
        let req = self.request(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            repo,
            scopes,
        );
        let response = self.attempt(&req)?;
        if response.status().as_u16() != 202 {
            return Err(self.status_error(&req, response));
        }
        let location = self.location(&response, repo, digest)?;
        drain(response);
        Ok(location)
    }

    fn location(
        &self,
        response: &ureq::http::Response<ureq::Body>,
        repo: &str,
        digest: &str,
    ) -> Result<String, RegistryError> {
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .filter(|l| !l.is_empty())
            .map(|l| self.resolve_location(l))
            .ok_or_else(|| RegistryError::BadLocation {
                host: self.registry.host.clone(),
                repository: repo.to_owned(),
                digest: digest.to_owned(),
            })
    }

    /// Best effort: abandon an upload session we will not use.
    fn cancel_upload(&self, location: &str, repo: &str, scopes: &[String]) {
        let req = self.request(Method::DELETE, location, repo, scopes);
        if let Ok(r) = self.attempt(&req) {
            drain(r);
        }
    }

    pub(super) fn head_manifest_scoped(
        &self,
        repo: &str,
        reference: &str,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        let mut req = self.request(
            Method::HEAD,
            &format!("/v2/{repo}/manifests/{reference}"),
            repo,
            scopes,
        );
        req.headers
            .push(("Accept", super::MANIFEST_MEDIA_TYPES.join(", ")));
        let response = self.send(&req)?;
        let status = response.status().as_u16();
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        drain(response);
        Ok(if status == 200 { digest } else { None })
    }

    /// PUT `m` at `reference`; returns the `OCI-Subject` header the registry
    /// answered with (a registry with the referrers API names the subject).
    pub(super) fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        m: &ManifestBlob,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        let mut req = self.request(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            repo,
            scopes,
        );
        req.headers.push(("Content-Type", m.media_type.clone()));
        req.body = Body::Bytes(&m.bytes);
        let response = self.send(&req)?;
        if response.status().as_u16() != 201 {
            return Err(self.status_error(&req, response));
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let returned = header("docker-content-digest");
        let subject = header("oci-subject");
        drain(response);
        if let Some(actual) = returned.filter(|d| *d != m.digest) {
            return Err(RegistryError::DigestMismatch {
                host: self.registry.host.clone(),
                repository: repo.to_owned(),
                expected: m.digest.clone(),
                actual,
            });
        }
        Ok(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_blob_goes_first_then_the_largest() {
        let blob = |size| BlobSource {
            digest: format!("sha256:{size}"),
            size,
            path: PathBuf::new(),
        };
        // Plan order: config, layer, config, layer, SBOM.
        let blobs = [
            blob(300),
            blob(60 << 20),
            blob(280),
            blob(59 << 20),
            blob(9000),
        ];
        let refs: Vec<&BlobSource> = blobs.iter().collect();
        assert_eq!(upload_order(&refs), vec![2, 1, 3, 4, 0]);
        assert_eq!(upload_order(&refs[..1]), vec![0]);
        assert!(upload_order(&[]).is_empty());
    }

    #[test]
    fn a_manifest_names_the_digests_it_references() {
        let m = br#"{"config":{"digest":"sha256:aa11"},"layers":[{"digest":"sha256:bb22"}]}"#;
        assert!(names_any(m, &["sha256:cc", "sha256:bb22"]));
        assert!(!names_any(m, &["sha256:cc", "sha256:dd"]));
        assert!(!names_any(m, &[]));
    }
}
