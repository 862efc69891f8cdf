package s3

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

var _ objstore.Retainer = (*Store)(nil)

// ObjectLock implements objstore.Retainer with GetObjectLockConfiguration.
func (s *Store) ObjectLock(ctx context.Context) (objstore.LockConfig, error) {
	out, err := s.client.GetObjectLockConfiguration(ctx, &awss3.GetObjectLockConfigurationInput{Bucket: aws.String(s.cfg.Bucket)})
	if err != nil {
		if ctx.Err() == nil && noLockConfig(err) {
			return objstore.LockConfig{}, nil
		}
		return objstore.LockConfig{}, s.classify(ctx, "object lock configuration of bucket", s.cfg.Bucket, err)
	}
	c := out.ObjectLockConfiguration
	if c == nil || c.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		return objstore.LockConfig{}, nil
	}
	lc := objstore.LockConfig{Enabled: true}
	if c.Rule != nil && c.Rule.DefaultRetention != nil {
		d := c.Rule.DefaultRetention
		lc.DefaultMode = objstore.RetentionMode(d.Mode)
		lc.DefaultPeriod = time.Duration(aws.ToInt32(d.Days))*24*time.Hour + time.Duration(aws.ToInt32(d.Years))*365*24*time.Hour
	}
	return lc, nil
}

// noLockConfig says whether err is S3's answer for a bucket without
// Object Lock.
func noLockConfig(err error) bool {
	code := apiCode(err)
	return code == "ObjectLockConfigurationNotFoundError" || code == "ObjectLockConfigurationNotFound" ||
		(httpStatus(err) == http.StatusBadRequest && code == "InvalidRequest" && strings.Contains(strings.ToLower(err.Error()), "lock"))
}

// PutRetained implements objstore.Retainer: the retention goes with the
// PutObject (or CreateMultipartUpload), so the object never exists
// unretained.
func (s *Store) PutRetained(ctx context.Context, key string, r io.ReadSeeker, size int64, ret objstore.Retention) error {
	if err := objstore.CheckRetention(s, "put", key, ret); err != nil {
		return err
	}
	err := s.putObject(ctx, key, r, size, nil, ret)
	if err != nil && ctx.Err() == nil && noLockConfig(err) {
		return objstore.NoObjectLock(s, "put", key)
	}
	return err
}

// Retain implements objstore.Retainer with PutObjectRetention, without
// bypassing governance: S3 refuses to shorten a retention in force.
func (s *Store) Retain(ctx context.Context, key string, ret objstore.Retention) error {
	if err := objstore.CheckRetention(s, "retain", key, ret); err != nil {
		return err
	}
	_, err := s.client.PutObjectRetention(ctx, &awss3.PutObjectRetentionInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    s.fullKey(key),
		Retention: &types.ObjectLockRetention{
			Mode:            types.ObjectLockRetentionMode(ret.Mode),
			RetainUntilDate: aws.Time(ret.Until),
		},
	})
	if err != nil {
		return s.lockError(ctx, "retain", key, err, fmt.Sprintf("cannot become %s", ret))
	}
	return nil
}

// lockError classifies an error of a call that Object Lock may refuse.
func (s *Store) lockError(ctx context.Context, op, key string, err error, why string) error {
	if ctx.Err() == nil {
		switch {
		case noLockConfig(err):
			return objstore.NoObjectLock(s, op, key)
		case httpStatus(err) == http.StatusForbidden || apiCode(err) == "ObjectLocked" || strings.Contains(err.Error(), "WORM protected"):
			// A retention that would shorten, a delete of a retained
			// version: AWS answers 403 AccessDenied, MinIO 400
			// InvalidRequest "Object is WORM protected".
			return objstore.ObjectLocked(s, op, key, fmt.Sprintf("%s (%s)", why, apiCode(err)))
		}
	}
	return s.classify(ctx, op, key, err)
}

// Retention implements objstore.Retainer with GetObjectRetention.
func (s *Store) Retention(ctx context.Context, key string) (objstore.Retention, error) {
	if key == "" {
		return objstore.Retention{}, objstore.ValidKey(key)
	}
	out, err := s.client.GetObjectRetention(ctx, &awss3.GetObjectRetentionInput{Bucket: aws.String(s.cfg.Bucket), Key: s.fullKey(key)})
	if err != nil {
		if ctx.Err() == nil && (apiCode(err) == "NoSuchObjectLockConfiguration" || noLockConfig(err)) {
			// No retention on this object, or none possible in the
			// bucket: it exists unretained, or not at all.
			_, serr := s.Stat(ctx, key)
			return objstore.Retention{}, serr
		}
		return objstore.Retention{}, s.classify(ctx, "retention of", key, err)
	}
	if out.Retention == nil || out.Retention.RetainUntilDate == nil {
		return objstore.Retention{}, nil
	}
	return objstore.Retention{Mode: objstore.RetentionMode(out.Retention.Mode), Until: out.Retention.RetainUntilDate.UTC()}, nil
}

// Purge implements objstore.Retainer: every version and delete marker of
// key is deleted by its version id. S3 refuses the retained versions; the
// others are deleted all the same.
func (s *Store) Purge(ctx context.Context, key string) error {
	if err := objstore.ValidKey(key); err != nil {
		return err
	}
	full := s.prefix + key
	in := &awss3.ListObjectVersionsInput{Bucket: aws.String(s.cfg.Bucket), Prefix: aws.String(full), MaxKeys: aws.Int32(s.cfg.ListPageSize)}
	var versions []string
	for {
		out, err := s.client.ListObjectVersions(ctx, in)
		if err != nil {
			return s.classify(ctx, "list versions of", key, err)
		}
		for _, v := range out.Versions {
			if aws.ToString(v.Key) == full {
				versions = append(versions, aws.ToString(v.VersionId))
			}
		}
		for _, m := range out.DeleteMarkers {
			if aws.ToString(m.Key) == full {
				versions = append(versions, aws.ToString(m.VersionId))
			}
		}
		if !aws.ToBool(out.IsTruncated) || aws.ToString(out.NextKeyMarker) > full {
			break
		}
		in.KeyMarker, in.VersionIdMarker = out.NextKeyMarker, out.NextVersionIdMarker
	}
	var locked error
	for _, v := range versions {
		din := &awss3.DeleteObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(full)}
		if v != "" {
			din.VersionId = aws.String(v)
		}
		_, err := s.client.DeleteObject(ctx, din)
		if err == nil {
			continue
		}
		err = s.lockError(ctx, "purge", key, err, "version "+v+" retained")
		switch {
		case objstore.IsNotFound(err):
		case objstore.IsObjectLocked(err):
			if locked == nil {
				locked = err
			}
		default:
			return err
		}
	}
	if locked != nil {
		return errkind.Mark(errkind.Permanent, locked)
	}
	return nil
}
