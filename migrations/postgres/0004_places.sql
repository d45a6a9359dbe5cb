-- Version 4: where each picture was taken, in degrees (`near:` and `bbox:`): its record's GPS
-- position (`record.facts.gps`), when that names a place.
ALTER TABLE images ADD COLUMN latitude double precision, ADD COLUMN longitude double precision;
UPDATE images
SET latitude = (record #>> '{facts,gps,0}')::double precision,
    longitude = (record #>> '{facts,gps,1}')::double precision
WHERE (record #>> '{facts,gps,0}')::double precision BETWEEN -90 AND 90
  AND (record #>> '{facts,gps,1}')::double precision BETWEEN -180 AND 180;
CREATE INDEX images_place ON images (latitude, longitude);
