-- The node allowed to act as a stream's origin (hex node id): set when the stream is created,
-- or bound by the first publish check a node signs. Only it may sign segment reports.
ALTER TABLE streams ADD COLUMN origin_node TEXT DEFAULT NULL;
