package s3

import (
	"context"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/gatewayd/gatewayd/errkind"
	"github.com/gatewayd/gatewayd/objstore"
)

var _ objstore.Restorer = (*Store)(nil)

// Restore implements objstore.Restorer with RestoreObject. S3 answers 202
// to a new request, 200 while the object is restored already, and 409
// RestoreAlreadyInProgress while a restore runs: none is an error here.
// Its 403 InvalidObjectState (the object is in no archive class; MinIO
// answers so for every object) wraps objstore.ErrNotArchived.
func (s *Store) Restore(ctx context.Context, key string, days int, tier string) error {
	if err := objstore.ValidTier(tier); err != nil {
		return err
	}
	if days < 1 {
		return fmt.Errorf("%s: restore %s: %d days", s, key, days)
	}
	_, err := s.client.RestoreObject(ctx, &awss3.RestoreObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    s.fullKey(key),
		RestoreRequest: &types.RestoreRequest{
			Days:                 aws.Int32(int32(days)),
			GlacierJobParameters: &types.GlacierJobParameters{Tier: types.Tier(tier)},
		},
	})
	if err != nil && ctx.Err() == nil && httpStatus(err) == http.StatusConflict && apiCode(err) == "RestoreAlreadyInProgress" {
		return nil
	}
	if err != nil && ctx.Err() == nil && httpStatus(err) == http.StatusForbidden && apiCode(err) == "InvalidObjectState" {
		// S3's answer for an object not in an archive class.
		return errkind.Mark(errkind.Permanent, fmt.Errorf("%s: restore %s: %w: %w", s, key, objstore.ErrNotArchived, err))
	}
	if err != nil {
		return s.classify(ctx, "restore", key, err)
	}
	return nil
}

// RestoreStatus implements objstore.Restorer with HeadObject: the storage
// class and the x-amz-restore header.
func (s *Store) RestoreStatus(ctx context.Context, key string) (objstore.RestoreStatus, error) {
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: s.fullKey(key)})
	if err != nil {
		return objstore.RestoreStatus{}, s.classify(ctx, "restore status of", key, err)
	}
	st := objstore.RestoreStatus{StorageClass: normalizeClass(string(out.StorageClass))}
	st.Archived = objstore.ArchiveClasses[st.StorageClass]
	st.Ongoing, st.Expiry, err = objstore.ParseRestoreHeader(aws.ToString(out.Restore))
	if err != nil {
		return st, fmt.Errorf("%s: restore status of %s: %w", s, key, err)
	}
	return st, nil
}
